package engine

import (
	"sync"
	"testing"
)

type nopEvictor struct{}

func (nopEvictor) evict() {}

// A connection's holding is set by its loop and by the worker giving a
// frame back, at the same time: the budget's total stays the holding's
// value, across the small and the tracked (over 64 KiB) sizes.
func TestBudgetConcurrentSet(t *testing.T) {
	b := newBudget(1 << 40)
	var h holding
	var wg sync.WaitGroup
	for g := range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 20000 {
				n := int64((i*7919 + g*104729) % (200 << 10)) // small and big holdings
				b.set(&h, n, nopEvictor{})
			}
		}()
	}
	wg.Wait()
	if used, n := b.used.Load(), h.n; used != n {
		t.Fatalf("budget used %d, holding %d", used, n)
	}
	_, tracked := b.big[&h]
	if tracked != (h.n > bigHolding) {
		t.Fatalf("holding %d tracked as big: %v", h.n, tracked)
	}
}
