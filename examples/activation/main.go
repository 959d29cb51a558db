//go:build unix

// Command activation shows systemd-style socket activation: systemd (or
// any supervisor speaking its protocol) opens the listening socket and
// starts the program with it, and the program serves it through
// [engine.Serve]. The socket exists before the program runs and outlives
// it, so the program can be started on the first connection, restarted or
// upgraded while clients keep connecting: connections wait in the socket's
// queue meanwhile.
//
// The protocol (sd_listen_fds(3)): the supervisor passes the sockets as
// descriptors 3, 4, … and sets LISTEN_FDS to their number and LISTEN_PID
// to the pid of the process meant to use them (a variable inherited by
// some other process is not for it). This program expects one socket.
// Without LISTEN_FDS, or when LISTEN_PID is not its own pid, it listens on
// -addr itself. Either way it prints "listening on ADDR (pid N)", with
// "socket activation, " before the pid when the socket was passed in, and
// serves echo until SIGINT or SIGTERM, which shut it down gracefully (exit
// 0).
//
// Try it by hand with systemd's own tool, which listens, then starts the
// program on the first connection with the socket and both variables set:
//
//	go build -o /tmp/activation ./examples/activation
//	systemd-socket-activate -l 127.0.0.1:7777 /tmp/activation
//	go run ./examples/echo -addr 127.0.0.1:7777 activated
//
// or without it: /tmp/activation -addr 127.0.0.1:7777. examples/README.md
// has the systemd units.
package main

import (
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"strconv"

	"github.com/petrel-rpc/petrel/engine"
)

// listenFDsStart is the first descriptor of the sockets passed in
// (SD_LISTEN_FDS_START).
const listenFDsStart = 3

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "activation:", err)
		os.Exit(1)
	}
}

func run() error {
	addr := flag.String("addr", "127.0.0.1:7777", "address to listen on when no socket is passed in")
	flag.Parse()

	cfg := engine.Config{Handlers: map[string]engine.Handler{"echo": engine.Classic(echo)}}
	ln, err := activated()
	if err != nil {
		return err
	}
	var srv *engine.Server
	how := ""
	if ln != nil {
		// The server owns ln from here on and closes it when it stops:
		// only this process's descriptor. The socket itself stays open in
		// the supervisor, ready for the next start.
		srv, err = engine.Serve(ln, cfg)
		if err != nil {
			ln.Close()
			return err
		}
		how = "socket activation, "
	} else {
		cfg.Addr = *addr
		if srv, err = engine.Listen(cfg); err != nil {
			return err
		}
	}
	fmt.Printf("listening on %s (%spid %d)\n", srv.AddrString(), how, os.Getpid())
	// Petrel handles SIGINT and SIGTERM: a graceful shutdown, after which
	// Wait reports ErrSignal, which wraps ErrServerClosed.
	if err := srv.Wait(); !errors.Is(err, engine.ErrServerClosed) || errors.Is(err, engine.ErrDrainCut) {
		return err
	}
	return nil
}

func echo(payload []byte) (uint16, []byte, error) { return 200, payload, nil }

// activated returns the listener passed in by the supervisor, or nil when
// there is none for this process. Like sd_listen_fds(1), it removes the
// variables from the environment, so that they do not reach the program's
// own children.
func activated() (net.Listener, error) {
	pid, fds := os.Getenv("LISTEN_PID"), os.Getenv("LISTEN_FDS")
	os.Unsetenv("LISTEN_PID")
	os.Unsetenv("LISTEN_FDS")
	os.Unsetenv("LISTEN_FDNAMES")
	if fds == "" || pid != strconv.Itoa(os.Getpid()) {
		return nil, nil
	}
	n, err := strconv.Atoi(fds)
	switch {
	case err != nil || n < 0:
		return nil, fmt.Errorf("LISTEN_FDS=%q: not a count of descriptors", fds)
	case n == 0:
		return nil, nil
	case n > 1:
		return nil, fmt.Errorf("LISTEN_FDS=%d: this program serves one socket (one ListenStream= in its .socket unit)", n)
	}
	f := os.NewFile(listenFDsStart, "LISTEN_FDS socket")
	// FileListener works on a duplicate (close-on-exec, as the program's
	// children need not see it); the original descriptor is closed here.
	ln, err := net.FileListener(f)
	f.Close()
	if err != nil {
		return nil, fmt.Errorf("descriptor %d from LISTEN_FDS: %w", listenFDsStart, err)
	}
	return ln, nil
}
