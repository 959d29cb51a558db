package client

import (
	"context"
	"errors"
	"fmt"
	"net"
	"runtime"
	"sync"
	"sync/atomic"
)

// PoolConfig configures a [Pool].
type PoolConfig struct {
	// Config applies to every connection. Its Addr is used when Addrs is
	// empty. Each connection negotiates its protocol version on its own, as
	// [Dial] does (see [Pool.Version]).
	Config
	// Addrs are the servers to spread connections over, in the forms of
	// [Config.Addr]. Each new connection goes to the next address in turn;
	// when dialing one fails, the others are tried before the call fails.
	Addrs []string
	// Size is the most connections the pool keeps open at once; 0 means
	// runtime.GOMAXPROCS(0).
	Size int
}

// Pool shares up to Size connections between any number of goroutines.
// Connections are dialed lazily, when a call finds no idle one and the pool
// is not full; a connection that broke (see [Client.Err]) is dropped and
// replaced by a fresh one on a later call. A call waits for a free
// connection no longer than its context allows.
//
// A call that was on a connection when it broke fails (the pool does not
// retry, since the server may have run the request); only later calls get
// the replacement. After a server restart, each idle connection therefore
// fails one call. The one exception is a version-1 connection whose
// sequence numbers are used up ([ErrSeqExhausted]): the call was not sent,
// so the pool replaces the connection and sends the call on the new one.
//
// Its methods may be called from any goroutine.
type Pool struct {
	cfg     config   // shared settings; Addr unused
	targets []config // cfg resolved for each server address
	next    atomic.Uint32
	// version is 1 + the protocol version of the last connection dialed; 0
	// before the first.
	version atomic.Uint32
	// slots holds one token per connection the pool may have: an idle
	// client, or nil for a connection not dialed yet. A caller takes a
	// token for the length of its call.
	slots chan *Client
	done  chan struct{} // closed by Close

	mu     sync.Mutex // guards closed, and orders Close against put
	closed bool
}

// NewPool returns a pool for cfg. It validates the configuration and the
// addresses but dials nothing.
func NewPool(cfg PoolConfig) (*Pool, error) {
	addrs := cfg.Addrs
	if len(addrs) == 0 {
		addrs = []string{cfg.Addr}
	}
	rc, err := cfg.Config.resolve(false)
	if err != nil {
		return nil, err
	}
	targets := make([]config, len(addrs))
	for i, a := range addrs {
		n, addr, err := splitAddr(a)
		if err != nil {
			return nil, err
		}
		targets[i] = rc
		targets[i].Addr, targets[i].network, targets[i].address = a, n, addr
	}
	size := cfg.Size
	if size < 0 {
		return nil, fmt.Errorf("%w: negative pool size", ErrConfig)
	}
	if size == 0 {
		size = runtime.GOMAXPROCS(0)
	}
	p := &Pool{
		cfg:     rc,
		targets: targets,
		slots:   make(chan *Client, size),
		done:    make(chan struct{}),
	}
	for range size {
		p.slots <- nil
	}
	return p, nil
}

// Call is [Client.Call] on one of the pool's connections.
func (p *Pool) Call(ctx context.Context, req string, payload []byte) (Response, error) {
	return p.call(ctx, req, payload, nil, true)
}

// CallInto is [Client.CallInto] on one of the pool's connections.
func (p *Pool) CallInto(ctx context.Context, req string, payload, dst []byte) (Response, error) {
	return p.call(ctx, req, payload, dst, false)
}

func (p *Pool) call(ctx context.Context, req string, payload, dst []byte, fresh bool) (Response, error) {
	if err := checkCall(req, payload, p.cfg.MaxPayload); err != nil {
		return Response{}, err
	}
	var c *Client
	select {
	case <-p.done:
		return Response{}, ErrClosed
	case c = <-p.slots:
	case <-ctx.Done():
		return Response{}, ctx.Err()
	}
	select {
	case <-p.done:
		p.put(c)
		return Response{}, ErrClosed
	default:
	}
	// An idle client is never broken: only a call or Close breaks one, and
	// a client broken by its call is not put back.
	if c == nil {
		var err error
		if c, err = p.dial(ctx); err != nil {
			p.put(nil)
			return Response{}, err
		}
	}
	resp, err := c.call(ctx, req, payload, dst, fresh)
	if errors.Is(err, ErrSeqExhausted) {
		// Nothing was sent: send it on a fresh connection.
		c.Close()
		if c, err = p.dial(ctx); err != nil {
			p.put(nil)
			return Response{}, err
		}
		resp, err = c.call(ctx, req, payload, dst, fresh)
	}
	if c.Err() != nil {
		c.Close()
		c = nil
	}
	p.put(c)
	return resp, err
}

// dial connects to the next address in turn, trying the others if it fails.
func (p *Pool) dial(ctx context.Context) (*Client, error) {
	first := int(p.next.Add(1)-1) % len(p.targets)
	var errs []error
	for i := range p.targets {
		c, err := dial(ctx, p.targets[(first+i)%len(p.targets)])
		if err == nil {
			p.version.Store(1 + uint32(c.Version()))
			return c, nil
		}
		errs = append(errs, err)
		if ctx.Err() != nil || errors.Is(err, ErrProtocolCheck) {
			break
		}
	}
	return nil, errors.Join(errs...)
}

// Version returns the protocol version negotiated by the connection the
// pool dialed last; ok is false before the first. Connections keep the
// version they negotiated, so with several servers, or across a server's
// upgrade, the pool's connections may speak different versions.
func (p *Pool) Version() (version uint8, ok bool) {
	v := p.version.Load()
	return uint8(v - 1), v != 0
}

// put returns a token: an idle client, or nil for a free slot.
func (p *Pool) put(c *Client) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		if c != nil {
			c.Close()
		}
		return
	}
	p.slots <- c // never blocks: a token was taken before
}

// Close closes the idle connections at once and the others as their calls
// return; calls after Close fail with [ErrClosed]. A second Close returns
// [net.ErrClosed].
func (p *Pool) Close() error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return net.ErrClosed
	}
	p.closed = true
	close(p.done)
	p.mu.Unlock()
	for {
		select {
		case c := <-p.slots:
			if c != nil {
				c.Close()
			}
		default:
			return nil
		}
	}
}
