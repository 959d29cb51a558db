package bench

import (
	"context"
	"sync/atomic"
	"time"
)

// Drive runs the echo load of the load scenarios against a Petrel server
// that is already running at addr ("host:port" or "unix:///path"): conns
// synchronous connections, each sending payload-byte requests for d, every
// answer verified. It returns the number of answers. It is the load side
// of measurements made outside the suite, such as perf stat on a server
// started with -serve (see bench/perfstat.sh).
func Drive(ctx context.Context, addr string, conns, payload int, d time.Duration) (int64, error) {
	sys := System{Name: "driven", Protocol: ProtoPetrel}
	sc := Scenario{Name: "drive", Conns: conns, Payload: payload}
	callers, err := dialAll(ctx, ProtoPetrel, dialConfig{addr: addr}, conns, nil)
	if err != nil {
		return 0, err
	}
	defer closeAll(callers)
	for _, cl := range callers {
		cl.setDeadline(time.Now().Add(d + time.Minute))
	}
	var total atomic.Int64
	var phase atomic.Int32
	phase.Store(measuring)
	fl := newFailure()
	wg := loadConns(callers, 0, sys, sc, make([]int64, len(callers)), &phase, fl, func(int, time.Duration) { total.Add(1) })
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-fl.ch:
	case <-ctx.Done():
	}
	phase.Store(stopping)
	wg.Wait()
	if fl.err != nil {
		return total.Load(), fl.err
	}
	return total.Load(), ctx.Err()
}
