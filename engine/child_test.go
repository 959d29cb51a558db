//go:build unix

package engine_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/petrel-rpc/petrel/codec"
	"github.com/petrel-rpc/petrel/engine"
	"github.com/petrel-rpc/petrel/internal/testnet"
)

// childModeEnv switches the test binary into one of the child programs
// below (see TestMain).
const childModeEnv = "PETREL_TEST_CHILD"

// runChildMode runs the child program named by mode and returns its exit
// status.
func runChildMode(mode string) int {
	switch mode {
	case "signal":
		return signalChild()
	case "emfile":
		return emfileChild()
	case "signal2":
		return secondSignalChild()
	}
	fmt.Println("unknown child mode", mode)
	return 2
}

// child starts the test binary as the child program mode and returns its
// stdout lines.
func child(t *testing.T, mode string) (*exec.Cmd, io.WriteCloser, <-chan string, *strings.Builder) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), childModeEnv+"="+mode)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	stderr := &strings.Builder{}
	cmd.Stderr = stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var once sync.Once
	wait := func() { once.Do(func() { cmd.Process.Kill(); cmd.Wait() }) }
	t.Cleanup(func() {
		wait()
		if t.Failed() {
			t.Logf("child stderr:\n%s", stderr)
		}
	})
	lines := make(chan string, 32)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- sc.Text()
		}
		io.Copy(io.Discard, stdout)
	}()
	return cmd, stdin, lines, stderr
}

// emfileChild serves echo on both engines with an open-file limit of 64.
func emfileChild() int {
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &syscall.Rlimit{Cur: 64, Max: 64}); err != nil {
		fmt.Println("setrlimit:", err)
		return 2
	}
	var servers []*engine.Server
	for _, v := range variants {
		srv, err := engine.Listen(engine.Config{Addr: "127.0.0.1:0", Engine: v.kind, Inline: v.inline, EventLoops: 1,
			Logger: testnet.QuietLogger(), Handlers: testHandlers(), IgnoreSignals: true})
		if err != nil {
			fmt.Println("listen:", err)
			return 2
		}
		servers = append(servers, srv)
		fmt.Println("addr", v.name, srv.AddrString())
	}
	// Until stdin closes; then report whether every server still runs.
	io.Copy(io.Discard, os.Stdin)
	code := 0
	for i, srv := range servers {
		select {
		case <-srv.Done():
			fmt.Fprintln(os.Stderr, "dead", variants[i].name, srv.Err())
			code = 1
		default:
		}
		srv.Close()
	}
	return code
}

// Defect 1: a flood at the open-file limit makes accept fail with EMFILE;
// the server backs off and serves new connections once the flood closes,
// on every engine (ulimit -n 64, 100 connections).
func TestEMFILEFlood(t *testing.T) {
	cmd, stdin, lines, stderr := child(t, "emfile")
	addrs := map[string]string{}
	for range variants {
		l, ok := recvOrFailOK(t, lines, ioTimeout, "child address")
		f := strings.Fields(l)
		if !ok || len(f) != 3 || f[0] != "addr" {
			t.Fatalf("child said %q; stderr: %s", l, stderr)
		}
		addrs[f[1]] = f[2]
	}
	for _, v := range variants {
		addr := addrs[v.name]
		var flood []net.Conn
		for range 100 {
			nc, err := net.DialTimeout("tcp", addr, time.Second)
			if err == nil {
				flood = append(flood, nc)
			}
		}
		for _, nc := range flood {
			nc.Close()
		}
		// Within a few seconds a new client is served.
		deadline := time.Now().Add(5 * time.Second)
		for {
			err := echoOnce(addr)
			if err == nil {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: not serving 5s after the flood closed: %v; stderr: %s", v.name, err, stderr)
			}
		}
	}
	stdin.Close()
	if err := cmd.Wait(); err != nil {
		t.Fatalf("child: %v; stdout/stderr: %s", err, stderr)
	}
}

// echoOnce dials addr and makes one echo call, within a second.
func echoOnce(addr string) error {
	nc, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return err
	}
	defer nc.Close()
	nc.SetDeadline(time.Now().Add(time.Second))
	wire, _ := codec.AppendFrame(nil, codec.Frame{Seq: 1, Request: []byte("echo"), Payload: []byte("hi")}, nil)
	if _, err := nc.Write(wire); err != nil {
		return err
	}
	buf := make([]byte, 64)
	n, err := io.ReadAtLeast(nc, buf, codec.HeaderLen+6)
	if err != nil {
		return err
	}
	f, _, _, err := codec.Parse(buf[:n], codec.Options{})
	if err != nil || string(f.Payload) != "hi" {
		return fmt.Errorf("answer %q: %v", buf[:n], err)
	}
	return nil
}

// secondSignalChild runs an inline server whose handler blocks its event
// loop for good; signals are handled. It prints "addr ADDR", "started",
// then "exit ERR" once the server has stopped.
func secondSignalChild() int {
	srv, err := engine.Listen(engine.Config{Addr: "127.0.0.1:0", Engine: engine.Reactor, Inline: true, EventLoops: 1,
		Logger: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})), ShutdownTimeout: time.Hour,
		Handlers: map[string]engine.Handler{
			"block": func(context.Context, *engine.Request) (uint16, []byte, error) {
				fmt.Println("started")
				select {} // breaks the inline promise on purpose
			},
		}})
	if err != nil {
		fmt.Println("listen:", err)
		return 2
	}
	fmt.Println("addr", srv.AddrString())
	<-srv.Done()
	fmt.Println("exit", srv.Err())
	if !errors.Is(srv.Err(), engine.ErrSignal) || !errors.Is(srv.Err(), engine.ErrDrainCut) {
		return 1
	}
	return 0
}

// Defect 5: the second SIGTERM closes at once, even with an inline handler
// blocking the event loop and a shutdown timeout of an hour.
func TestSecondSignalCloses(t *testing.T) {
	cmd, _, lines, stderr := child(t, "signal2")
	l, _ := recvOrFailOK(t, lines, ioTimeout, "child address")
	f := strings.Fields(l)
	if len(f) != 2 || f[0] != "addr" {
		t.Fatalf("child said %q; stderr: %s", l, stderr)
	}
	nc, err := net.DialTimeout("tcp", f[1], ioTimeout)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	wire, _ := codec.AppendFrame(nil, codec.Frame{Seq: 1, Request: []byte("block")}, nil)
	nc.Write(wire)
	if l, _ := recvOrFailOK(t, lines, ioTimeout, "handler start"); l != "started" {
		t.Fatalf("child said %q", l)
	}
	cmd.Process.Signal(syscall.SIGTERM)
	// Two signals sent at once may reach the process as one: send the
	// second once the first has been acted on (the listener is closed).
	testnet.WaitFor(t, ioTimeout, "the first signal to stop the listener", func() bool {
		c, err := net.DialTimeout("tcp", f[1], time.Second)
		if err == nil {
			c.Close()
		}
		return err != nil
	})
	cmd.Process.Signal(syscall.SIGTERM)
	l, ok := recvOrFailOK(t, lines, ioTimeout, "the child to stop after the second signal")
	if !ok || !strings.HasPrefix(l, "exit ") {
		t.Fatalf("child said %q; stderr: %s", l, stderr)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	if err := testnet.RecvOrFail(t, done, ioTimeout, "the child to exit"); err != nil {
		t.Fatalf("child: %v (%s); stderr: %s", err, l, stderr)
	}
}
