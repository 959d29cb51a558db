// Command middleware shows [engine.Middleware]: logging with log/slog,
// metrics (calls, statuses and latency per request name) and
// authorisation, applied to every handler in one place.
//
//	go run ./examples/middleware
//
// The demo runs the same handlers on two servers, one on TCP and one on a
// Unix socket, sends a few requests and prints the log and the metrics.
//
// Order matters. [engine.Config.Middleware] lists middleware outermost
// first, so with
//
//	Middleware: []engine.Middleware{logRequests(logger), m.count, authorise(token)}
//
// a request goes through logRequests, then m.count, then authorise, then
// the handler, and the answer comes back the other way. Logging and metrics
// thus see every request, including those authorise refuses, and the
// latency they measure includes authorisation. Put authorise first and the
// refused requests would be neither logged nor counted.
//
// authorise accepts a request from a process of this program's own user on
// a Unix socket (the kernel's peer credentials), or a request whose payload
// starts with "Bearer TOKEN\n"; it strips that prefix before the handler
// sees the payload. Anything else is answered 1401, an application status
// (codes above 1024 are the application's own). Over TLS with client
// certificates, the same place could check req.Conn.TLS.PeerCertificates
// (see ../tls).
package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/petrel-rpc/petrel/client"
	"github.com/petrel-rpc/petrel/engine"
)

// StatusUnauthorised answers a request that is neither from a local
// process of this user nor carries the token.
const StatusUnauthorised = 1401

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "middleware:", err)
		os.Exit(1)
	}
}

// logRequests logs every request once it is answered: at level Error for
// handler errors (answered 500) and statuses 500 to 599, Warn for other
// statuses of 400 and above (the application's own codes included), Info
// for the rest.
func logRequests(log *slog.Logger) engine.Middleware {
	return func(next engine.Handler) engine.Handler {
		return func(ctx context.Context, req *engine.Request) (uint16, []byte, error) {
			start := time.Now()
			in := len(req.Payload) // before an inner middleware changes it
			status, out, err := next(ctx, req)
			code := int(status)
			if err != nil {
				code = 500 // what the server answers
			}
			level := slog.LevelInfo
			switch {
			case code >= 500 && code < 600:
				level = slog.LevelError
			case code >= 400:
				level = slog.LevelWarn
			}
			attrs := []slog.Attr{
				slog.String("name", req.Name),
				slog.Uint64("conn", req.Conn.ID),
				slog.Int("status", code),
				slog.Int("in", in),
				slog.Int("out", len(out)),
				slog.Duration("took", time.Since(start)),
			}
			if err != nil {
				attrs = append(attrs, slog.Any("err", err))
			}
			log.LogAttrs(ctx, level, "request", attrs...)
			return status, out, err
		}
	}
}

// metrics counts calls, statuses and time spent per request name.
type metrics struct {
	mu     sync.Mutex // guards byName
	byName map[string]*stat
}

type stat struct {
	calls    int
	byStatus map[int]int // a handler error counts as 500
	total    time.Duration
}

// count is the metrics middleware.
func (m *metrics) count(next engine.Handler) engine.Handler {
	return func(ctx context.Context, req *engine.Request) (uint16, []byte, error) {
		start := time.Now()
		status, out, err := next(ctx, req)
		took := time.Since(start)
		code := int(status)
		if err != nil {
			code = 500
		}
		m.mu.Lock()
		defer m.mu.Unlock()
		s := m.byName[req.Name] // req.Name is the registered string: keeping it costs nothing
		if s == nil {
			s = &stat{byStatus: map[int]int{}}
			m.byName[req.Name] = s
		}
		s.calls++
		s.byStatus[code]++
		s.total += took
		return status, out, err
	}
}

func (m *metrics) print() {
	m.mu.Lock()
	defer m.mu.Unlock()
	names := make([]string, 0, len(m.byName))
	for n := range m.byName {
		names = append(names, n)
	}
	slices.Sort(names)
	for _, n := range names {
		s := m.byName[n]
		fmt.Printf("metrics: %s: %d calls, statuses %v, mean latency %v\n",
			n, s.calls, s.byStatus, s.total/time.Duration(s.calls))
	}
}

// authorise lets through requests from this user's processes on a Unix
// socket, and requests whose payload starts with "Bearer TOKEN\n".
func authorise(token string) engine.Middleware {
	prefix := []byte("Bearer " + token + "\n")
	uid := uint32(os.Getuid())
	return func(next engine.Handler) engine.Handler {
		return func(ctx context.Context, req *engine.Request) (uint16, []byte, error) {
			if pc := req.Conn.PeerCred; pc != nil && pc.UID == uid {
				return next(ctx, req)
			}
			if rest, ok := bytes.CutPrefix(req.Payload, prefix); ok {
				req.Payload = rest
				return next(ctx, req)
			}
			return StatusUnauthorised, []byte("unauthorised"), nil
		}
	}
}

func greet(_ context.Context, req *engine.Request) (uint16, []byte, error) {
	return 200, append([]byte("hello, "), req.Payload...), nil
}

func fail(context.Context, *engine.Request) (uint16, []byte, error) {
	return 0, nil, errors.New("the database is on fire")
}

func run() error {
	dir, err := os.MkdirTemp("", "pt")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	// Log to stdout without timestamps, so the demo's output reads well.
	logger := slog.New(slog.NewTextHandler(os.Stdout, &slog.HandlerOptions{
		ReplaceAttr: func(groups []string, a slog.Attr) slog.Attr {
			if a.Key == slog.TimeKey && len(groups) == 0 {
				return slog.Attr{}
			}
			return a
		},
	}))
	m := &metrics{byName: map[string]*stat{}}
	const token = "s3cret"
	cfg := engine.Config{
		Middleware: []engine.Middleware{logRequests(logger), m.count, authorise(token)},
		Handlers:   map[string]engine.Handler{"greet": greet, "fail": fail},
		// The server logs handler errors itself too; the demo keeps that
		// out of its output.
		Logger: slog.New(slog.DiscardHandler),
	}
	var servers []*engine.Server
	defer func() {
		for _, s := range servers {
			s.Close()
		}
	}()
	for _, addr := range []string{"127.0.0.1:0", "unix://" + filepath.Join(dir, "mw.sock")} {
		cfg.Addr = addr
		s, err := engine.Listen(cfg)
		if err != nil {
			return err
		}
		servers = append(servers, s)
	}
	tcp, unix := servers[0].AddrString(), servers[1].AddrString()

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	calls := []struct{ what, addr, req, payload string }{
		{"TCP with the token", tcp, "greet", "Bearer " + token + "\nworld"},
		{"TCP without a token", tcp, "greet", "world"},
		{"Unix socket, same user", unix, "greet", "neighbour"},
		{"TCP, a failing handler", tcp, "fail", "Bearer " + token + "\n"},
	}
	for _, c := range calls {
		answer, err := call(ctx, c.addr, c.req, c.payload)
		if err != nil {
			fmt.Printf("%s: error: %v\n", c.what, err)
			continue
		}
		fmt.Printf("%s: %s\n", c.what, answer)
	}
	m.print()

	for _, s := range servers {
		if err := s.Shutdown(ctx); err != nil {
			return err
		}
	}
	return nil
}

func call(ctx context.Context, addr, req, payload string) (string, error) {
	c, err := client.Dial(ctx, client.Config{Addr: addr})
	if err != nil {
		return "", err
	}
	defer c.Close()
	resp, err := c.Call(ctx, req, []byte(payload))
	return string(resp.Payload), err
}
