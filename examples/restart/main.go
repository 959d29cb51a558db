//go:build unix

// Command restart shows a zero-downtime restart: on SIGHUP the running
// server starts a new process of itself (the same executable and
// arguments), hands it the listening socket, waits until the new process
// serves, and only then shuts itself down gracefully. The socket is never
// closed, so no connection is refused: connections waiting in its accept
// queue are accepted by whichever process takes them, and after the
// handover by the new one alone.
//
// Run the server, then restart it as often as you like (after rebuilding
// the binary, say) while a client keeps calling it:
//
//	go build -o /tmp/restart ./examples/restart
//	/tmp/restart -addr 127.0.0.1:7777
//	kill -HUP <pid>            # the pid printed on the last "listening" line
//	go run ./examples/echo -addr 127.0.0.1:7777 still there
//
// Each process prints "listening on ADDR (pid N)" once it serves; the old
// one then prints "handed over to pid N", answers every request it has
// already read, closes its idle connections and exits 0. If the new process
// fails to start or to get ready, the old one says so on stderr and keeps
// serving. SIGINT or SIGTERM shut the current process down gracefully
// (exit 0), as Petrel does by default.
//
// How the socket travels: the old process passes a duplicate of its
// listening descriptor to the new one through [exec.Cmd.ExtraFiles] (it
// becomes descriptor 3 there) and names it in PETREL_LISTEN_FD=3; the new
// process makes a listener of it with [os.NewFile] and [net.FileListener]
// and serves it with [engine.Serve]. A pipe passed as descriptor 4
// (PETREL_READY_FD=4) carries the new process's "ready" line back.
//
// The server handles one request, echo, which answers with its payload.
package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"syscall"
	"time"

	"github.com/petrel-rpc/petrel/engine"
)

// The environment variables naming the descriptors a new process inherits.
const (
	envListenFD = "PETREL_LISTEN_FD"
	envReadyFD  = "PETREL_READY_FD"
)

const (
	// readyTimeout bounds how long the old process waits for the new one to
	// serve before it gives up and keeps serving itself.
	readyTimeout = 30 * time.Second
	// drainTimeout bounds the old process's graceful shutdown.
	drainTimeout = 30 * time.Second
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "restart:", err)
		os.Exit(1)
	}
}

func run() error {
	addr := flag.String("addr", "127.0.0.1:7777", "TCP address to listen on (ignored when the socket is inherited)")
	flag.Parse()

	// Listen for SIGHUP before anything else: a process started by a
	// handover may get the next SIGHUP as soon as it prints its pid.
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)

	ln, ready, err := listener(*addr)
	if err != nil {
		return err
	}
	// The server owns ln from here on and closes it when it stops; we keep
	// the *net.TCPListener only to duplicate its descriptor at a handover.
	srv, err := engine.Serve(ln, engine.Config{
		Handlers: map[string]engine.Handler{"echo": engine.Classic(echo)},
	})
	if err != nil {
		ln.Close()
		return err
	}
	fmt.Printf("listening on %s (pid %d)\n", srv.AddrString(), os.Getpid())
	if ready != nil {
		// The old process shuts down once it reads this line.
		_, err := ready.WriteString("ready\n")
		ready.Close()
		if err != nil {
			srv.Close()
			return fmt.Errorf("telling the old process we are ready: %w", err)
		}
	}

	for {
		select {
		case <-srv.Done():
			// SIGINT or SIGTERM: Petrel shut the server down gracefully.
			return stopped(srv.Err())
		case <-hup:
			pid, err := handOver(ln)
			if err != nil {
				fmt.Fprintf(os.Stderr, "restart: handover failed, still serving: %v\n", err)
				continue
			}
			fmt.Printf("handed over to pid %d\n", pid)
			ctx, cancel := context.WithTimeout(context.Background(), drainTimeout)
			defer cancel()
			return srv.Shutdown(ctx)
		}
	}
}

// stopped turns the reason the server stopped into the program's result:
// nil after a complete graceful shutdown.
func stopped(err error) error {
	if errors.Is(err, engine.ErrServerClosed) && !errors.Is(err, engine.ErrDrainCut) {
		return nil
	}
	return err
}

func echo(payload []byte) (uint16, []byte, error) { return 200, payload, nil }

// listener returns the listening socket: the one inherited from the old
// process when PETREL_LISTEN_FD is set, with the pipe on which to report
// readiness, or a new one on addr.
func listener(addr string) (*net.TCPListener, *os.File, error) {
	lfd, rfd := os.Getenv(envListenFD), os.Getenv(envReadyFD)
	// Not for our own children: handOver sets them afresh.
	os.Unsetenv(envListenFD)
	os.Unsetenv(envReadyFD)
	if lfd == "" {
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			return nil, nil, err
		}
		return ln.(*net.TCPListener), nil, nil
	}
	f, err := inherited(lfd, "listener")
	if err != nil {
		return nil, nil, err
	}
	// FileListener duplicates the descriptor; the original is closed here.
	ln, err := net.FileListener(f)
	f.Close()
	if err != nil {
		return nil, nil, fmt.Errorf("inherited listener: %w", err)
	}
	tl, ok := ln.(*net.TCPListener)
	if !ok {
		ln.Close()
		return nil, nil, fmt.Errorf("inherited listener is a %T, want a TCP listener", ln)
	}
	var ready *os.File
	if rfd != "" {
		if ready, err = inherited(rfd, "ready pipe"); err != nil {
			tl.Close()
			return nil, nil, err
		}
	}
	return tl, ready, nil
}

// inherited returns the descriptor named by the environment value v.
func inherited(v, name string) (*os.File, error) {
	fd, err := strconv.Atoi(v)
	if err != nil || fd < 3 {
		return nil, fmt.Errorf("inherited %s: bad descriptor %q", name, v)
	}
	return os.NewFile(uintptr(fd), name), nil
}

// handOver starts a new process of this program on the listening socket
// and returns its pid once it serves. On error the new process is gone and
// this one still owns the socket.
func handOver(ln *net.TCPListener) (int, error) {
	exe, err := os.Executable()
	if err != nil {
		return 0, err
	}
	// File returns a duplicate of the listening descriptor: a second
	// descriptor, in an *os.File of its own, for the same socket. That is
	// what ExtraFiles passes (the child gets its own copy of it as
	// descriptor 3). The server owns ln's descriptor and closes it when it
	// shuts down; a socket lives until the last descriptor for it, in any
	// process, is closed, so our Shutdown closes only our own and the new
	// process keeps accepting. Wrapping ln's own descriptor in an *os.File
	// instead (through SyscallConn) would give it two owners: closing that
	// file, or its finalizer, would pull the descriptor out from under the
	// running server.
	lf, err := ln.File()
	if err != nil {
		return 0, fmt.Errorf("duplicating the listener: %w", err)
	}
	defer lf.Close() // our copy of the duplicate; the child has its own
	r, w, err := os.Pipe()
	if err != nil {
		return 0, err
	}
	defer r.Close()

	cmd := exec.Command(exe, os.Args[1:]...)
	// ExtraFiles[i] becomes descriptor 3+i in the new process.
	cmd.ExtraFiles = []*os.File{lf, w}
	cmd.Env = append(os.Environ(), envListenFD+"=3", envReadyFD+"=4")
	// *os.File values are handed over as they are, with no copying
	// goroutine that would die with this process.
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	err = cmd.Start()
	w.Close() // the child holds the write end now: EOF means it exited
	if err != nil {
		return 0, err
	}

	r.SetReadDeadline(time.Now().Add(readyTimeout))
	line, err := bufio.NewReader(r).ReadString('\n')
	if err != nil || line != "ready\n" {
		cmd.Process.Kill()
		werr := cmd.Wait()
		return 0, fmt.Errorf("new process %d did not get ready (read %q, %v; it exited: %v)", cmd.Process.Pid, line, err, werr)
	}
	// The new process outlives this one: it is not ours to wait for.
	pid := cmd.Process.Pid
	cmd.Process.Release()
	return pid, nil
}
