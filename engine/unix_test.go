package engine_test

import (
	"errors"
	"net"
	"os"
	"syscall"
	"testing"

	"github.com/petrel-rpc/petrel/codec"
	"github.com/petrel-rpc/petrel/engine"
	"github.com/petrel-rpc/petrel/internal/testnet"
)

// forEachVariant runs fn for every engine variant over a Unix socket.
func forEachVariant(t *testing.T, fn func(t *testing.T, e env)) {
	for _, v := range variants {
		t.Run(v.name, func(t *testing.T) {
			t.Parallel()
			fn(t, env{v, "unix"})
		})
	}
}

// A stale socket file (nothing listening) is replaced; a live one is
// refused with EADDRINUSE and left working; a non-socket file is refused.
func TestUnixSocketStaleAndLive(t *testing.T) {
	forEachVariant(t, func(t *testing.T, e env) {
		path := sockPath(t)
		ln, err := net.Listen("unix", path)
		if err != nil {
			t.Fatal(err)
		}
		ln.(*net.UnixListener).SetUnlinkOnClose(false)
		ln.Close()
		if _, err := os.Stat(path); err != nil {
			t.Fatalf("stale socket not left behind: %v", err)
		}
		srv := e.listen(t, engine.Config{Addr: "unix://" + path})
		dial(t, srv).expect("echo", []byte("x"), codec.StatusOK, []byte("x"))

		for _, v := range variants {
			_, err := engine.Listen(engine.Config{Addr: "unix://" + path, Engine: v.kind, Inline: v.inline,
				IgnoreSignals: true, Logger: testnet.QuietLogger()})
			if !errors.Is(err, syscall.EADDRINUSE) {
				t.Errorf("%s on a live socket: %v, want EADDRINUSE", v.name, err)
			}
		}
		dial(t, srv).expect("echo", []byte("still"), codec.StatusOK, []byte("still"))

		file := sockPath(t)
		if err := os.WriteFile(file, []byte("not a socket"), 0o600); err != nil {
			t.Fatal(err)
		}
		_, err = engine.Listen(engine.Config{Addr: "unix://" + file, Engine: e.kind, Inline: e.inline,
			IgnoreSignals: true, Logger: testnet.QuietLogger()})
		if !errors.Is(err, syscall.EADDRINUSE) {
			t.Errorf("on a regular file: %v, want EADDRINUSE", err)
		}
		if b, err := os.ReadFile(file); err != nil || string(b) != "not a socket" {
			t.Errorf("regular file touched: %q, %v", b, err)
		}
	})
}

// SocketMode is applied, and the socket file is removed on Shutdown and on
// Close.
func TestUnixSocketModeAndRemoval(t *testing.T) {
	forEachVariant(t, func(t *testing.T, e env) {
		for _, mode := range []os.FileMode{0, 0o660} {
			for _, shutdown := range []bool{false, true} {
				path := sockPath(t)
				srv := e.listen(t, engine.Config{Addr: "unix://" + path, SocketMode: mode})
				if got := srv.AddrString(); got != "unix://"+path {
					t.Errorf("AddrString = %q", got)
				}
				fi, err := os.Stat(path)
				if err != nil {
					t.Fatal(err)
				}
				want := mode
				if want == 0 {
					want = 0o600
				}
				if fi.Mode()&os.ModeSocket == 0 || fi.Mode().Perm() != want {
					t.Errorf("socket mode %v, want socket %v", fi.Mode(), want)
				}
				dial(t, srv).expect("echo", nil, codec.StatusOK, nil)
				if shutdown {
					err = srv.Shutdown(t.Context())
				} else {
					err = srv.Close()
				}
				if err != nil {
					t.Fatal(err)
				}
				if _, err := os.Lstat(path); !errors.Is(err, os.ErrNotExist) {
					t.Errorf("socket file after stop (shutdown=%v): %v", shutdown, err)
				}
			}
		}
	})
}

func TestConfigErrors(t *testing.T) {
	for _, cfg := range []engine.Config{
		{},
		{Addr: "127.0.0.1:0", Engine: "nope"},
		{Addr: "udp://127.0.0.1:0"},
		{Addr: "unix://"},
		{Addr: "no port"},
		{Addr: "127.0.0.1:0", MaxConns: -1},
		{Addr: "127.0.0.1:0", Workers: -1},
	} {
		cfg.IgnoreSignals = true
		cfg.Logger = testnet.QuietLogger()
		if srv, err := engine.Listen(cfg); !errors.Is(err, engine.ErrConfig) {
			t.Errorf("Listen(%+v) = %v, want ErrConfig", cfg, err)
			if srv != nil {
				srv.Close()
			}
		}
	}
	// A handler with a bad name fails Listen.
	_, err := engine.Listen(engine.Config{Addr: "127.0.0.1:0", IgnoreSignals: true, Logger: testnet.QuietLogger(),
		Handlers: map[string]engine.Handler{"": testHandlers()["echo"]}})
	if !errors.Is(err, engine.ErrBadName) {
		t.Errorf("empty handler name: %v", err)
	}
	// A port in use fails Listen, for both engines.
	for _, v := range variants {
		srv := listen(t, engine.Config{Addr: "127.0.0.1:0", Engine: v.kind})
		if s2, err := engine.Listen(engine.Config{Addr: srv.AddrString(), Engine: v.kind, Inline: v.inline,
			IgnoreSignals: true, Logger: testnet.QuietLogger()}); err == nil {
			s2.Close()
			t.Errorf("%s: second Listen on %s succeeded", v.name, srv.AddrString())
		}
	}
}
