//go:build unix

package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/petrel-rpc/petrel/client"
)

func TestMain(m *testing.M) {
	// IgnoreCurrent: this package main imports the engine, and with it
	// gnet's package-level worker pool, whose goroutines start at init and
	// live for the whole process (engine/main_test.go does the same).
	goleak.VerifyTestMain(m, goleak.IgnoreCurrent())
}

// runTimeout bounds every run of the program and every call.
const runTimeout = 60 * time.Second

// shim emulates the one thing of systemd's that a parent cannot do from
// exec.Cmd: set LISTEN_PID to the pid of the process it starts, which is
// known only once it runs. The shell sets it to its own pid ($$) and then
// execs the program (named by $0, its arguments in "$@"), which keeps that
// pid and the inherited descriptor 3. systemd does the same between fork
// and exec.
const shim = `LISTEN_PID=$$ exec "$0" "$@"`

// TestActivation emulates systemd: the test owns the listening socket, as
// systemd does, and starts the program with it as descriptor 3 and
// LISTEN_FDS=1. It checks that the program serves that socket (not -addr)
// under its own pid, that SIGTERM stops it with exit 0, and that the
// socket, still the test's, serves again when the program is started a
// second time — including a connection made while no program ran.
func TestActivation(t *testing.T) {
	bin := build(t)
	sh, err := exec.LookPath("sh")
	if err != nil {
		t.Skipf("no sh: %v", err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	// The test never accepts: connections wait in the socket's queue for
	// the program. f is a descriptor for the same socket, for ExtraFiles.
	f, err := ln.(*net.TCPListener).File()
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	addr := ln.Addr().String()
	ctx, cancel := context.WithTimeout(context.Background(), runTimeout)
	defer cancel()

	for round := 1; round <= 2; round++ {
		var early net.Conn // connected while no program runs
		if round == 2 {
			if early, err = net.Dial("tcp", addr); err != nil {
				t.Fatalf("dial with no program running: %v", err)
			}
		}
		// -addr 127.0.0.1:0: had the program ignored the socket, it would
		// print another address.
		p := start(t, exec.Command(sh, "-c", shim, bin, "-addr", "127.0.0.1:0"), f, "LISTEN_FDS=1")
		want := fmt.Sprintf("listening on %s (socket activation, pid %d)\n", addr, p.cmd.Process.Pid)
		if line := p.line(t); line != want {
			t.Fatalf("round %d: printed %q, want %q", round, line, want)
		}
		echoOK(ctx, t, addr, nil, fmt.Sprintf("round %d", round))
		if early != nil {
			echoOK(ctx, t, addr, early, "queued before the program started")
		}
		p.stop(t, syscall.SIGTERM)
	}
}

// TestActivationNotForUs starts the program with LISTEN_FDS set but
// LISTEN_PID naming another process: the socket is not for it, so it
// listens on -addr itself.
func TestActivationNotForUs(t *testing.T) {
	bin := build(t)
	cmd := exec.Command(bin, "-addr", "127.0.0.1:0")
	p := start(t, cmd, nil, "LISTEN_FDS=1", fmt.Sprintf("LISTEN_PID=%d", os.Getpid()))
	line := p.line(t)
	var addr string
	var pid int
	if _, err := fmt.Sscanf(line, "listening on %s (pid %d)\n", &addr, &pid); err != nil || pid != cmd.Process.Pid {
		t.Fatalf("printed %q, want \"listening on ADDR (pid %d)\" (%v)", line, cmd.Process.Pid, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), runTimeout)
	defer cancel()
	echoOK(ctx, t, addr, nil, "own listener")
	p.stop(t, syscall.SIGTERM)
}

// echoOK calls echo with msg on addr, over conn when it is not nil.
func echoOK(ctx context.Context, t *testing.T, addr string, conn net.Conn, msg string) {
	t.Helper()
	var c *client.Client
	var err error
	if conn != nil {
		c, err = client.New(ctx, conn, client.Config{})
	} else {
		c, err = client.Dial(ctx, client.Config{Addr: addr})
	}
	if err != nil {
		t.Fatalf("%s: %v", msg, err)
	}
	defer c.Close()
	resp, err := c.Call(ctx, "echo", []byte(msg))
	if err != nil || string(resp.Payload) != msg {
		t.Fatalf("echo %q: %q, %v", msg, resp.Payload, err)
	}
}

// proc is the program running in the background.
type proc struct {
	cmd    *exec.Cmd
	lines  chan string // stdout, line by line; closed at EOF
	stderr bytes.Buffer
	waited bool
}

// start runs cmd with socket, if not nil, as descriptor 3 and env added to
// the test's environment. At cleanup a process still running is killed.
func start(t *testing.T, cmd *exec.Cmd, socket *os.File, env ...string) *proc {
	t.Helper()
	p := &proc{cmd: cmd, lines: make(chan string, 16)}
	if socket != nil {
		cmd.ExtraFiles = []*os.File{socket}
	}
	cmd.Env = append(os.Environ(), env...)
	cmd.Stderr = &p.stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { // ends at EOF, when the process has exited
		defer close(p.lines)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			p.lines <- sc.Text() + "\n"
		}
	}()
	t.Cleanup(func() {
		if !p.waited {
			cmd.Process.Kill()
			for range p.lines {
			}
			cmd.Wait()
		}
	})
	return p
}

// line returns the next line of output.
func (p *proc) line(t *testing.T) string {
	t.Helper()
	timer := time.NewTimer(runTimeout)
	defer timer.Stop()
	select {
	case line, ok := <-p.lines:
		if !ok {
			p.cmd.Wait()
			p.waited = true
			t.Fatalf("the program exited: stderr:\n%s", p.stderr.String())
		}
		return line
	case <-timer.C:
		t.Fatalf("no output within %v", runTimeout)
	}
	return ""
}

// stop sends sig and fails the test unless the program then exits 0
// without printing more.
func (p *proc) stop(t *testing.T, sig os.Signal) {
	t.Helper()
	if err := p.cmd.Process.Signal(sig); err != nil {
		t.Fatal(err)
	}
	var rest strings.Builder
	timer := time.NewTimer(runTimeout)
	defer timer.Stop()
	for done := false; !done; {
		select {
		case line, ok := <-p.lines:
			done = !ok
			rest.WriteString(line)
		case <-timer.C:
			t.Fatalf("the program did not exit within %v of %v", runTimeout, sig)
		}
	}
	err := p.cmd.Wait()
	p.waited = true
	if err != nil || rest.Len() > 0 {
		t.Fatalf("after %v: %v, printed %q; stderr:\n%s", sig, err, rest.String(), p.stderr.String())
	}
}

// build compiles the example into a temporary directory.
func build(t *testing.T) string {
	t.Helper()
	gocmd, err := exec.LookPath("go")
	if err != nil {
		t.Skipf("no go command: %v", err)
	}
	bin := filepath.Join(t.TempDir(), "activation")
	if out, err := exec.Command(gocmd, "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}
