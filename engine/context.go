package engine

import (
	"context"
	"sync"
	"time"
)

// connContext is the context handlers receive: cancelled when the
// connection closes. It is a small hand-made context so that an idle
// connection costs no channel or goroutine until a handler asks for Done.
type connContext struct {
	mu       sync.Mutex    // guards the fields below
	done     chan struct{} // made on first Done call
	canceled bool          // set once by cancel: Err is context.Canceled
	armed    bool          // std: a handler may run; its watcher is not started yet (stdContext)
	watching bool          // std: the watcher was started since the last arm
	child    *reqContext   // the timed request running, cancelled with c
}

// attach makes rc the timed request cancelled with c (nil: none).
func (c *connContext) attach(rc *reqContext) {
	c.mu.Lock()
	c.child = rc
	c.mu.Unlock()
}

var closedChan = func() chan struct{} { c := make(chan struct{}); close(c); return c }()

func (c *connContext) Deadline() (time.Time, bool) { return time.Time{}, false }
func (c *connContext) Value(any) any               { return nil }

func (c *connContext) Done() <-chan struct{} {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.done == nil {
		if c.canceled {
			return closedChan
		}
		c.done = make(chan struct{})
	}
	return c.done
}

// arm marks the start of a request: the next Done call through a
// stdContext starts the watcher.
func (c *connContext) arm() {
	c.mu.Lock()
	c.armed, c.watching = true, false
	c.mu.Unlock()
}

// disarm marks the end of a request and reports whether the watch was
// started for it.
func (c *connContext) disarm() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	w := c.watching
	c.armed, c.watching = false, false
	return w
}

func (c *connContext) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.canceled {
		return context.Canceled
	}
	return nil
}

// cancel marks the context done; later calls do nothing.
func (c *connContext) cancel() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.canceled {
		return
	}
	c.canceled = true
	if c.done != nil {
		close(c.done)
	}
	if c.child != nil {
		c.child.cancel(context.Canceled)
	}
}

func (c *connContext) String() string { return "petrel.connContext" }
