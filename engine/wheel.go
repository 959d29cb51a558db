//go:build linux || darwin || freebsd || netbsd || openbsd || dragonfly

package engine

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/petrel-rpc/petrel/engine/internal/lifecycle"
)

// wheel is a hashed timing wheel for the reactor's timeouts. Connections
// keep their lifecycle phase and its start in atomics (O(1) per event, no
// lock); the wheel visits each connection only when the slot holding it
// comes round, then wakes its loop if it is due (the loop decides, with
// its own view of the connection: see rconn.check) or re-files it. The
// lock is taken when a connection opens and when the ticker sweeps, never
// per request.
type wheel struct {
	mu      sync.Mutex   // guards slots, cur and curTime
	slots   [][]*rconn   // connections filed by deadline
	tick    int64        // slot width in nanoseconds
	cur     int          // index of the slot for curTime
	curTime int64        // start of the current slot, unix nanoseconds
	now     atomic.Int64 // coarse clock, unix nanoseconds, updated by advance
}

func newWheel(tick time.Duration, slots int) *wheel {
	now := time.Now().UnixNano()
	w := &wheel{slots: make([][]*rconn, slots), tick: int64(tick), curTime: now}
	w.now.Store(now)
	return w
}

// add files rc under its current due time.
func (w *wheel) add(rc *rconn) {
	w.mu.Lock()
	w.fileLocked(rc, rc.dueAt(w.now.Load()))
	w.mu.Unlock()
}

// wheelHorizon is how many ticks ahead a connection is filed at most.
// Deadlines move earlier without the wheel knowing (an idle connection
// starts a frame: its idle deadline becomes the shorter read deadline; a
// busy one, filed with no deadline, goes idle), so a connection filed far
// ahead would be checked late: a read timeout of 30s would only be noticed
// when the 5m idle deadline's slot came round. Filing no further than this
// bounds the lateness to wheelHorizon+1 ticks (the tick is a tenth of the
// shortest timeout), at the cost of visiting each connection every
// wheelHorizon ticks.
const wheelHorizon = 5

func (w *wheel) fileLocked(rc *rconn, dl int64) {
	off := int64(1)
	if dl > w.curTime {
		off = min((dl-w.curTime)/w.tick+1, wheelHorizon)
	}
	if off >= int64(len(w.slots)) {
		off = int64(len(w.slots) - 1)
	}
	i := (w.cur + int(off)) % len(w.slots)
	w.slots[i] = append(w.slots[i], rc)
}

// advance moves the wheel to now, calling due for each connection whose
// due time has passed (and re-filing it). due runs with the lock released.
func (w *wheel) advance(now int64, due func(*rconn)) {
	w.now.Store(now)
	var list2 []*rconn
	w.mu.Lock()
	for w.curTime+w.tick <= now {
		w.cur = (w.cur + 1) % len(w.slots)
		w.curTime += w.tick
		list := w.slots[w.cur]
		w.slots[w.cur] = nil
		for _, rc := range list {
			if rc.gone.Load() {
				continue
			}
			dl := rc.dueAt(now)
			if dl <= now || rc.lc.Phase() == lifecycle.Writing {
				// Due, or sending an answer: its loop looks at it (a
				// sending connection every tick, to see it finish).
				list2 = append(list2, rc)
				dl = now + w.tick
			}
			w.fileLocked(rc, dl)
		}
		if now-w.curTime > int64(len(w.slots))*w.tick {
			// The ticker stalled for longer than the wheel spans: jump.
			w.curTime = now - w.tick
		}
	}
	w.mu.Unlock()
	for _, rc := range list2 {
		due(rc)
	}
}

// all calls f for every connection filed in the wheel.
func (w *wheel) all(f func(*rconn)) {
	w.mu.Lock()
	var list []*rconn
	for _, s := range w.slots {
		list = append(list, s...)
	}
	w.mu.Unlock()
	for _, rc := range list {
		if !rc.gone.Load() {
			f(rc)
		}
	}
}
