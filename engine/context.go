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
	mu   sync.Mutex    // guards done and err
	done chan struct{} // made on first Done call
	err  error         // set once by cancel
}

var closedChan = func() chan struct{} { c := make(chan struct{}); close(c); return c }()

func (c *connContext) Deadline() (time.Time, bool) { return time.Time{}, false }
func (c *connContext) Value(any) any               { return nil }

func (c *connContext) Done() <-chan struct{} {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.done == nil {
		if c.err != nil {
			return closedChan
		}
		c.done = make(chan struct{})
	}
	return c.done
}

func (c *connContext) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

// cancel marks the context done; later calls do nothing.
func (c *connContext) cancel() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err != nil {
		return
	}
	c.err = context.Canceled
	if c.done != nil {
		close(c.done)
	}
}

func (c *connContext) String() string { return "petrel.connContext" }
