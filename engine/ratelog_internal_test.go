package engine

import (
	"strconv"
	"testing"
	"time"
)

func TestRateLimiter(t *testing.T) {
	l := newRateLimiter(time.Second, 3)
	t0 := time.Unix(1000, 0)
	for i := range 3 {
		ok, first, sup := l.take("k", t0.Add(time.Duration(i)*time.Millisecond))
		if !ok || first != (i == 0) || sup != 0 {
			t.Fatalf("line %d: ok %v first %v suppressed %d", i, ok, first, sup)
		}
	}
	for i := range 7 {
		if ok, _, _ := l.take("k", t0.Add(500*time.Millisecond)); ok {
			t.Fatalf("line %d over the burst let through", 3+i)
		}
	}
	// Another key has its own budget.
	if ok, first, _ := l.take("other", t0); !ok || !first {
		t.Fatal("other key limited")
	}
	// The next window: the first line through says how many were dropped.
	ok, first, sup := l.take("k", t0.Add(time.Second))
	if !ok || !first || sup != 7 {
		t.Fatalf("next window: ok %v first %v suppressed %d, want true true 7", ok, first, sup)
	}
	if _, _, sup := l.take("k", t0.Add(time.Second)); sup != 0 {
		t.Fatalf("suppressed reported twice: %d", sup)
	}
}

// Beyond maxLogKeys, keys share one budget: the map stops growing.
func TestRateLimiterKeyBound(t *testing.T) {
	l := newRateLimiter(time.Hour, 1)
	now := time.Unix(1, 0)
	for i := range maxLogKeys + 100 {
		l.take("key"+strconv.Itoa(i), now)
	}
	if n := len(l.keys); n > maxLogKeys+1 {
		t.Fatalf("%d keys tracked", n)
	}
}
