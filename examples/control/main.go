// Command control shows a control channel into a long-running program: the
// program does its work in the background and serves requests on a Unix
// domain socket to report on it and steer it. Only processes running as the
// program's own user may use the channel: a middleware checks the peer
// credentials the kernel reports for the socket (SO_PEERCRED), and the
// socket file is created with mode 0600.
//
// Run the program, then steer it from another terminal:
//
//	go run ./examples/control -socket /tmp/control.sock run
//	go run ./examples/control -socket /tmp/control.sock status
//	go run ./examples/control -socket /tmp/control.sock pause
//	go run ./examples/control -socket /tmp/control.sock resume
//	go run ./examples/control -socket /tmp/control.sock stop
//
// Once it listens, the program prints "listening on unix:///PATH". It stops
// on the stop command, SIGINT or SIGTERM. It handles the signals itself (it
// has work of its own to wind down), so it sets
// [engine.Config.IgnoreSignals].
//
// Without arguments it runs a demo: the program and a client in one
// process, the client sending status, pause, status, resume, status and
// stop.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"github.com/petrel-rpc/petrel/client"
	"github.com/petrel-rpc/petrel/engine"
)

// StatusForbidden answers a request from another user. Codes above 1024
// are the application's own.
const StatusForbidden = 1403

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "control:", err)
		os.Exit(1)
	}
}

func run() error {
	socket := flag.String("socket", "", "path of the control socket")
	flag.Parse()
	switch {
	case *socket == "" && flag.NArg() == 0:
		return demo()
	case *socket == "" || flag.NArg() != 1:
		return errors.New("usage: control -socket PATH run|status|pause|resume|stop")
	}
	path, err := filepath.Abs(*socket)
	if err != nil {
		return err
	}
	addr := "unix://" + path
	if flag.Arg(0) == "run" {
		ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
		defer stop()
		final, err := runProgram(ctx, addr, func(a string) { fmt.Printf("listening on %s\n", a) })
		if final != "" {
			fmt.Printf("stopped: %s\n", final)
		}
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	answer, err := command(ctx, addr, flag.Arg(0))
	if err != nil {
		return err
	}
	fmt.Println(answer)
	return nil
}

// worker is the program's background work: it counts units of work, one
// per tick, while not paused.
type worker struct {
	mu     sync.Mutex // guards paused and units
	paused bool
	units  int
}

// work runs until ctx ends. Its ticker paces the simulated work.
func (w *worker) work(ctx context.Context) {
	t := time.NewTicker(10 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			w.mu.Lock()
			if !w.paused {
				w.units++
			}
			w.mu.Unlock()
		}
	}
}

func (w *worker) status() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	state := "running"
	if w.paused {
		state = "paused"
	}
	return fmt.Sprintf("%s, %d units of work done", state, w.units)
}

func (w *worker) setPaused(p bool) {
	w.mu.Lock()
	w.paused = p
	w.mu.Unlock()
}

// sameUser lets through only requests from a process running as this
// program's user. PeerCred is nil on TCP, so a control server moved to TCP
// by mistake refuses everything rather than everyone's requests passing.
func sameUser(next engine.Handler) engine.Handler {
	uid := uint32(os.Getuid())
	return func(ctx context.Context, req *engine.Request) (uint16, []byte, error) {
		if pc := req.Conn.PeerCred; pc == nil || pc.UID != uid {
			return StatusForbidden, []byte("permission denied"), nil
		}
		return next(ctx, req)
	}
}

// runProgram runs the program until ctx ends or a stop command arrives:
// the work in the background and the control server on addr. It calls
// ready with the server's address once the server listens, and returns the
// work's final status.
func runProgram(ctx context.Context, addr string, ready func(addr string)) (final string, err error) {
	ctx, stop := context.WithCancel(ctx)
	defer stop()
	w := &worker{}
	reply := func(f func() string) engine.Handler {
		return func(context.Context, *engine.Request) (uint16, []byte, error) {
			return 200, []byte(f()), nil
		}
	}
	srv, err := engine.Listen(engine.Config{
		Addr:          addr,
		IgnoreSignals: true, // runProgram's caller handles them
		Middleware:    []engine.Middleware{sameUser},
		Handlers: map[string]engine.Handler{
			"status": reply(w.status),
			"pause":  reply(func() string { w.setPaused(true); return "paused" }),
			"resume": reply(func() string { w.setPaused(false); return "running" }),
			// stop answers first: the server's graceful shutdown, which
			// stop sets off, still delivers the answer.
			"stop": reply(func() string { stop(); return "stopping" }),
		},
	})
	if err != nil {
		return "", err
	}
	var wg sync.WaitGroup
	wg.Go(func() { w.work(ctx) })
	ready(srv.AddrString())

	<-ctx.Done()
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err = srv.Shutdown(sctx)
	wg.Wait()
	return w.status(), err
}

// command sends one command to the program at addr and returns its answer.
func command(ctx context.Context, addr, cmd string) (string, error) {
	c, err := client.Dial(ctx, client.Config{Addr: addr})
	if err != nil {
		return "", err
	}
	defer c.Close()
	resp, err := c.Call(ctx, cmd, nil)
	if err != nil {
		return "", err
	}
	return string(resp.Payload), nil
}

// demo runs the program and steers it from the same process.
func demo() error {
	dir, err := os.MkdirTemp("", "pt")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	ready := make(chan string, 1)
	done := make(chan error, 1)
	var final string
	go func() {
		var err error
		final, err = runProgram(ctx, "unix://"+filepath.Join(dir, "control.sock"), func(a string) { ready <- a })
		done <- err
	}()
	var addr string
	select {
	case addr = <-ready:
	case err := <-done:
		return err
	}
	for _, cmd := range []string{"status", "pause", "status", "resume", "status", "stop"} {
		answer, err := command(ctx, addr, cmd)
		if err != nil {
			cancel()
			<-done
			return fmt.Errorf("%s: %w", cmd, err)
		}
		fmt.Printf("%s: %s\n", cmd, answer)
	}
	// Printed here, after the stop command's answer: the program may
	// finish stopping before this goroutine has printed that answer.
	err = <-done
	fmt.Printf("stopped: %s\n", final)
	return err
}
