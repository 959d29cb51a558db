package engine

import (
	"math"
	"sync"
	"sync/atomic"
	"time"
)

// budget is the server-wide bound on inbound bytes held for partly
// received frames and for pipelined frames not yet served
// (Config.MaxBuffered). Charging is an atomic add; the lock is taken only
// for connections holding more than bigHolding, or when the budget is
// exceeded.
type budget struct {
	limit int64
	used  atomic.Int64

	mu   sync.Mutex           // guards big, each big holder's n, and room
	big  map[*holding]evictor // holders of more than bigHolding bytes, with their connections
	room chan struct{}        // closed when bytes are given back; std connections wait on it
}

// bigHolding is the holding above which a connection is tracked as a
// candidate for eviction.
const bigHolding = 64 << 10

// evictor is a connection the budget can close (any goroutine).
type evictor interface{ evict() }

// holding is one connection's share of the budget: the bytes it holds,
// or evictedMark once the budget has closed it (set then gives nothing
// back). n is changed through budget.set, by whichever goroutine moves the
// connection (a reactor's loop charges a pipelined backlog while the
// worker that owns the request gives its frame back), and by
// evictLargest; each change is a compare-and-swap, so the budget's total
// stays the sum of its holdings. It is one word: every idle connection
// has one.
type holding struct {
	n int64
}

// evictedMark is a holding's n once the budget has closed its connection.
const evictedMark = math.MinInt64

// holds reports whether the holding counts bytes (not evicted, not empty),
// so that giving them back is worth a call to set: it spares the per-request
// path a look at the shared total.
func (h *holding) holds() bool { return atomic.LoadInt64(&h.n) > 0 }

// evicted reports whether the budget closed the holding's connection.
func (h *holding) evicted() bool { return atomic.LoadInt64(&h.n) == evictedMark }

func newBudget(limit int64) *budget {
	return &budget{limit: limit, big: map[*holding]evictor{}, room: make(chan struct{})}
}

// set makes h, the holding of owner's connection, hold n bytes and
// reports whether the budget is now exceeded.
func (b *budget) set(h *holding, n int64, owner evictor) (over bool) {
	for {
		old := atomic.LoadInt64(&h.n)
		if old == evictedMark {
			return false
		}
		if n == old {
			return b.used.Load() > b.limit
		}
		if old > bigHolding || n > bigHolding {
			b.mu.Lock()
			if !atomic.CompareAndSwapInt64(&h.n, old, n) {
				b.mu.Unlock()
				continue // changed meanwhile (or evicted): look again
			}
			if n > bigHolding {
				b.big[h] = owner
			} else {
				delete(b.big, h)
			}
			used := b.used.Add(n - old)
			if n < old {
				b.wakeLocked()
			}
			b.mu.Unlock()
			return used > b.limit
		}
		if !atomic.CompareAndSwapInt64(&h.n, old, n) {
			continue
		}
		used := b.used.Add(n - old)
		if n < old && old > 0 {
			b.mu.Lock()
			b.wakeLocked()
			b.mu.Unlock()
		}
		return used > b.limit
	}
}

func (b *budget) wakeLocked() {
	close(b.room)
	b.room = make(chan struct{})
}

// evictLargest closes the connections holding the most until the budget
// is back under its limit, and returns how many it closed. When no large
// holder is left, self (the holding of selfOwner, the connection that just
// grew) goes.
func (b *budget) evictLargest(self *holding, selfOwner evictor) int {
	closed := 0
	for b.used.Load() > b.limit {
		b.mu.Lock()
		var top *holding
		var owner evictor
		for h, o := range b.big {
			if top == nil || atomic.LoadInt64(&h.n) > atomic.LoadInt64(&top.n) {
				top, owner = h, o
			}
		}
		if top == nil {
			top, owner = self, selfOwner
		}
		if top == nil || top.evicted() {
			b.mu.Unlock()
			return closed
		}
		delete(b.big, top)
		for {
			// A small holding (self) can change outside the lock.
			v := atomic.LoadInt64(&top.n)
			if atomic.CompareAndSwapInt64(&top.n, v, evictedMark) {
				b.used.Add(-v)
				break
			}
		}
		b.wakeLocked()
		b.mu.Unlock()
		owner.evict()
		closed++
		if top == self {
			return closed
		}
	}
	return closed
}

// wake wakes the connections waiting for room, to look again.
func (b *budget) wake() {
	b.mu.Lock()
	b.wakeLocked()
	b.mu.Unlock()
}

// waitRoom waits until the budget has room for delta more bytes, or until
// deadline (zero: no deadline), stop closes or quit says so (looked at on
// every wake); it reports whether there is room.
func (b *budget) waitRoom(delta int64, deadline time.Time, stop <-chan struct{}, quit func() bool) bool {
	var timeout <-chan time.Time
	if !deadline.IsZero() {
		t := time.NewTimer(time.Until(deadline))
		defer t.Stop()
		timeout = t.C
	}
	for b.used.Load()+delta > b.limit {
		b.mu.Lock()
		room := b.room
		b.mu.Unlock()
		if b.used.Load()+delta <= b.limit {
			return true
		}
		if quit() {
			return false
		}
		select {
		case <-room:
		case <-timeout:
			return false
		case <-stop:
			return false
		}
	}
	return true
}
