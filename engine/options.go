package engine

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/petrel-rpc/petrel/codec"
)

// reservedPrefix begins the names of the built-in introspection requests.
// While [Config.Introspection] is on, handlers cannot be registered under
// it.
const reservedPrefix = "petrel."

// entry is one registered handler, already wrapped in the middleware, with
// its options resolved against the server's defaults. Entries are immutable
// once stored; the semaphore they point to is shared by every copy.
type entry struct {
	name string
	h    Handler
	opts HandlerOptions // as registered

	to         time.Duration // effective timeout; 0 means none
	maxPayload uint32        // effective payload limit in bytes
	sem        chan struct{} // MaxConcurrent slots; nil means no bound
	builtin    bool          // an introspection request

	// Log rate-limit keys, built once so that logging costs no
	// concatenation per request.
	panicKey, errorKey, statusKey string
}

// timeout is the handler's effective timeout: its own Timeout when set
// (negative meaning none), else the server's HandlerTimeout. 0 means none.
func (e *entry) timeout() time.Duration { return e.to }

// acquire takes one of the handler's MaxConcurrent slots, waiting at most
// wait when canWait is set (wait < 0: until ctx ends), and reports whether
// it got one. Without a bound it always succeeds. The fast path (a free
// slot) allocates nothing.
func (e *entry) acquire(ctx context.Context, canWait bool, wait time.Duration) bool {
	if e.sem == nil {
		return true
	}
	select {
	case e.sem <- struct{}{}:
		return true
	default:
	}
	if !canWait || wait == 0 {
		return false
	}
	var timeout <-chan time.Time
	if wait > 0 {
		t := time.NewTimer(wait)
		defer t.Stop()
		timeout = t.C
	}
	select {
	case e.sem <- struct{}{}:
		return true
	case <-timeout:
	case <-ctx.Done():
	}
	return false
}

// release gives back the slot acquire took.
func (e *entry) release() {
	if e.sem != nil {
		<-e.sem
	}
}

// registry maps request names to handlers. Reads are lock-free (an atomic
// pointer to an immutable map); registrations copy the map under mu.
type registry struct {
	mu sync.Mutex                        // serialises writers
	m  atomic.Pointer[map[string]*entry] // the current map, never mutated
	mw []Middleware

	// Server-wide defaults the options resolve against; set by
	// initDispatch before any registration, read-only after.
	defTimeout    time.Duration
	defMaxPayload uint32
	reserve       bool // names under reservedPrefix are refused (Introspection on)

	maxPayload atomic.Uint32 // at least the largest effective limit of any entry and defMaxPayload; never shrinks
}

func newRegistry(mw []Middleware) *registry {
	r := &registry{mw: append([]Middleware(nil), mw...), defMaxPayload: codec.DefaultMaxPayload}
	m := map[string]*entry{}
	r.m.Store(&m)
	r.maxPayload.Store(codec.DefaultMaxPayload)
	return r
}

// setDefaults records the server-wide settings that handler options
// override. It runs before any registration.
func (r *registry) setDefaults(timeout time.Duration, maxPayload uint32, reserve bool) {
	r.defTimeout, r.defMaxPayload, r.reserve = timeout, maxPayload, reserve
	r.maxPayload.Store(maxPayload)
}

// oneOptions returns the options given to a variadic registration: the
// first, or the zero value (every server-wide default).
func oneOptions(opts []HandlerOptions) HandlerOptions {
	if len(opts) == 0 {
		return HandlerOptions{}
	}
	return opts[0]
}

// add registers h under name with options opt, refusing empty, over-long
// and reserved names (PROTOCHECK; petrel.* while Introspection is on) with
// [ErrBadName] and invalid options with [ErrBadOptions].
func (r *registry) add(name string, h Handler, opt HandlerOptions) error {
	switch {
	case name == "" || len(name) > codec.MaxRequestLen:
		return fmt.Errorf("%w: %q (must be 1 to 255 bytes)", ErrBadName, name)
	case name == codec.ProtoCheck:
		return fmt.Errorf("%w: %q is built in", ErrBadName, name)
	case r.reserve && strings.HasPrefix(name, reservedPrefix):
		return fmt.Errorf("%w: %q: names beginning %q are reserved for introspection", ErrBadName, name, reservedPrefix)
	}
	return r.put(name, h, opt, false)
}

// put stores an entry for name without checking the name.
func (r *registry) put(name string, h Handler, opt HandlerOptions, builtin bool) error {
	if h == nil {
		return fmt.Errorf("%w: nil handler for %q", ErrBadName, name)
	}
	if opt.MaxConcurrent < 0 {
		return fmt.Errorf("%w: %q: negative MaxConcurrent %d", ErrBadOptions, name, opt.MaxConcurrent)
	}
	for i := len(r.mw) - 1; i >= 0; i-- {
		h = r.mw[i](h)
	}
	e := &entry{
		name: name, h: h, opts: opt, builtin: builtin,
		to: r.defTimeout, maxPayload: r.defMaxPayload,
		panicKey: "panic:" + name, errorKey: "error:" + name, statusKey: "status:" + name,
	}
	switch {
	case opt.Timeout > 0:
		e.to = opt.Timeout
	case opt.Timeout < 0:
		e.to = 0
	}
	if e.to < 0 {
		e.to = 0
	}
	if opt.MaxPayload > 0 {
		e.maxPayload = opt.MaxPayload
	}
	if opt.MaxConcurrent > 0 {
		e.sem = make(chan struct{}, opt.MaxConcurrent)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	old := *r.m.Load()
	m := make(map[string]*entry, len(old)+1)
	for k, v := range old {
		m[k] = v
	}
	m[name] = e
	r.m.Store(&m)
	if e.maxPayload > r.maxPayload.Load() {
		r.maxPayload.Store(e.maxPayload)
	}
	return nil
}

// lookup finds the handler for a request name without allocating.
func (r *registry) lookup(name []byte) (*entry, bool) {
	e, ok := (*r.m.Load())[string(name)]
	return e, ok
}

// entries returns every registered entry, sorted by name.
func (r *registry) entries() []*entry {
	m := *r.m.Load()
	es := make([]*entry, 0, len(m))
	for _, e := range m {
		es = append(es, e)
	}
	slices.SortFunc(es, func(a, b *entry) int { return strings.Compare(a.name, b.name) })
	return es
}

// largestPayload returns the largest payload limit in force for any
// request name: the server's MaxPayload, or a handler's larger
// [HandlerOptions.MaxPayload]. A transport sizes its per-connection
// backlog bound from it.
func (s *Server) largestPayload() uint32 { return s.handlers.maxPayload.Load() }

// protoCheckLen is the length of a version-1 PROTOCHECK payload.
const protoCheckLen = 1 + codec.NonceLen

// opts returns the options to parse the next frame of this session whose
// request text is name: the payload limit of that request's handler (its
// [HandlerOptions.MaxPayload], else the server's), and the session's MAC
// and version (version 0 until a version-1 PROTOCHECK has been answered).
// PROTOCHECK's limit is at least the 17 bytes of a version-1 PROTOCHECK.
// The transport calls it once the frame's header and request text have
// arrived and before it reads the payload, on the goroutine that serves
// the connection's frames, one frame at a time. It does not allocate.
func (s *session) opts(name []byte) codec.Options {
	srv := s.srv
	o := codec.Options{MaxPayload: srv.cfg.MaxPayload, MAC: srv.mac != nil, Version: s.ver}
	if e, ok := srv.handlers.lookup(name); ok {
		o.MaxPayload = e.maxPayload
	} else if o.MaxPayload < protoCheckLen && string(name) == codec.ProtoCheck {
		// However small the server's limit, a version-1 PROTOCHECK fits.
		o.MaxPayload = protoCheckLen
	}
	return o
}

// nonBlocking reports whether the request named name can be answered
// without blocking, so that a transport may serve it on its event loop
// without a hand-off: true for PROTOCHECK, the empty name (401) and the
// introspection requests, and for a handler registered with
// [HandlerOptions.NonBlocking], and for unknown names (answered 400);
// false for every other handler. Any goroutine; it does not allocate.
func (s *session) nonBlocking(name []byte) bool {
	if len(name) == 0 || string(name) == codec.ProtoCheck {
		return true
	}
	e, ok := s.srv.handlers.lookup(name)
	// An unknown name is answered 400 on the loop: the library's own
	// answers never wait behind handlers. (A handler registered under
	// that name in the instant between this look and the dispatch would
	// run on the loop once.)
	return !ok || e.opts.NonBlocking || e.builtin
}
