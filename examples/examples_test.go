package examples_test

import (
	"bufio"
	"bytes"
	"context"
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
	goleak.VerifyTestMain(m)
}

// runTimeout bounds every run of an example.
const runTimeout = 60 * time.Second

// demos are the self-contained examples: run without arguments, each
// prints its results and exits 0. want lists substrings the output must
// contain, in order.
var demos = []struct {
	name string
	want []string
}{
	{"echo", []string{"hello, petrel\n"}},
	{"tls", []string{
		"client with a certificate: hello, alice\n",
		"client without a certificate: refused: ",
		"alice on secret: the secret is 42\n",
		"bob on secret: status 1403: not authorised\n",
	}},
	{"control", []string{
		"status: running, ",
		"pause: paused\n",
		"status: paused, ",
		"resume: running\n",
		"status: running, ",
		"stop: stopping\n",
		"stopped: running, ",
	}},
	{"hmac", []string{
		"right key: signed and verified\n",
		"wrong key: status 502, matches codec.ErrBadMAC: true\n",
	}},
	{"multi", []string{
		"public echo: hello\n",
		"public stats: error: petrel: status 400: ",
		"admin stats: public server: 4 requests, answers by status map[200:3 400:1]\n",
		"admin shutdown: shutting down\n",
		"public: petrel: server closed\n",
		"admin: petrel: server closed\n",
	}},
	{"middleware", []string{
		"level=INFO msg=request name=greet conn=1 status=200 in=19 out=12 ",
		"TCP with the token: hello, world\n",
		"level=WARN msg=request name=greet conn=2 status=1401 ",
		"TCP without a token: error: petrel: status 1401: unauthorised\n",
		"Unix socket, same user: hello, neighbour\n",
		"level=ERROR msg=request name=fail conn=3 status=500 ",
		`err="the database is on fire"`,
		"TCP, a failing handler: error: petrel: status 500: ",
		"metrics: fail: 1 calls, statuses map[500:1], mean latency ",
		"metrics: greet: 3 calls, statuses map[200:2 1401:1], mean latency ",
	}},
	{"jsonsvc", []string{
		"add 2 3: 5\n",
		"greet gopher: hello, gopher\n",
		"greet with no name: status 1422: name is required\n",
		"add with a string: status 1400: bad request: ",
	}},
}

// TestEveryExampleIsTested fails when a directory under examples/ has no
// test here (examples/server is tested by its owners; restart and
// activation, servers that hand sockets between processes, by the tests in
// their own directories).
func TestEveryExampleIsTested(t *testing.T) {
	tested := map[string]bool{"server": true, "restart": true, "activation": true}
	for _, d := range demos {
		tested[d.name] = true
	}
	entries, err := os.ReadDir(".")
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if e.IsDir() && !tested[e.Name()] {
			t.Errorf("examples/%s has no test in examples_test.go", e.Name())
		}
	}
}

func TestDemos(t *testing.T) {
	for _, d := range demos {
		t.Run(d.name, func(t *testing.T) {
			t.Parallel()
			bin := build(t, d.name)
			ctx, cancel := context.WithTimeout(context.Background(), runTimeout)
			defer cancel()
			cmd := exec.CommandContext(ctx, bin)
			var stdout, stderr bytes.Buffer
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			err := cmd.Run()
			if err != nil {
				t.Fatalf("%s: %v\nstdout:\n%s\nstderr:\n%s", d.name, err, stdout.String(), stderr.String())
			}
			wantInOrder(t, stdout.String(), d.want...)
			if stderr.Len() > 0 {
				t.Logf("stderr:\n%s", stderr.String())
			}
		})
	}
}

// TestEchoServerAndClient runs echo as a server and as a client, and stops
// the server with SIGTERM.
func TestEchoServerAndClient(t *testing.T) {
	t.Parallel()
	bin := build(t, "echo")
	srv := start(t, bin, "-serve", "127.0.0.1:0")
	addr := srv.listening(t, "listening on ")

	out := runOK(t, bin, "-addr", addr, "hello,", "world")
	if out != "hello, world\n" {
		t.Errorf("client printed %q, want %q", out, "hello, world\n")
	}
	dir := shortTempDir(t)
	usrv := start(t, bin, "-serve", "unix://"+filepath.Join(dir, "echo.sock"))
	uaddr := usrv.listening(t, "listening on ")
	if out := runOK(t, bin, "-addr", uaddr, "over", "unix"); out != "over unix\n" {
		t.Errorf("client printed %q, want %q", out, "over unix\n")
	}
	srv.signal(t, syscall.SIGTERM)
	usrv.signal(t, syscall.SIGINT)
	srv.wait(t)
	usrv.wait(t)
}

// TestControlProgram runs control as a long-running program and steers it
// with the control commands, then stops a second run with SIGTERM.
func TestControlProgram(t *testing.T) {
	t.Parallel()
	bin := build(t, "control")
	sock := filepath.Join(shortTempDir(t), "ctl.sock")
	prog := start(t, bin, "-socket", sock, "run")
	prog.listening(t, "listening on unix://")

	steps := []struct{ cmd, want string }{
		{"status", "running, "},
		{"pause", "paused\n"},
		{"status", "paused, "},
		{"resume", "running\n"},
		{"status", "running, "},
		{"stop", "stopping\n"},
	}
	for _, s := range steps {
		if out := runOK(t, bin, "-socket", sock, s.cmd); !strings.HasPrefix(out, s.want) {
			t.Errorf("%s: printed %q, want it to start with %q", s.cmd, out, s.want)
		}
	}
	wantInOrder(t, prog.wait(t), "stopped: running, ")

	prog = start(t, bin, "-socket", sock, "run")
	prog.listening(t, "listening on unix://")
	prog.signal(t, syscall.SIGTERM)
	wantInOrder(t, prog.wait(t), "stopped: ")
}

// TestMultiProgram runs multi with real addresses, calls the public
// server, and stops both with the admin server's shutdown request.
func TestMultiProgram(t *testing.T) {
	t.Parallel()
	bin := build(t, "multi")
	sock := "unix://" + filepath.Join(shortTempDir(t), "admin.sock")
	prog := start(t, bin, "-public", "127.0.0.1:0", "-admin", sock)
	public := prog.listening(t, "public listening on ")
	admin := prog.listening(t, "admin listening on ")
	if admin != sock {
		t.Errorf("admin address %q, want %q", admin, sock)
	}
	ctx, cancel := context.WithTimeout(context.Background(), runTimeout)
	defer cancel()
	for _, c := range []struct{ addr, req, want string }{
		{public, "echo", "ping"},
		{admin, "shutdown", "shutting down"},
	} {
		cl, err := client.Dial(ctx, client.Config{Addr: c.addr})
		if err != nil {
			t.Fatal(err)
		}
		resp, err := cl.Call(ctx, c.req, []byte(c.want))
		cl.Close()
		if err != nil || string(resp.Payload) != c.want {
			t.Errorf("%s on %s: %q, %v; want %q", c.req, c.addr, resp.Payload, err, c.want)
		}
	}
	prog.wait(t)
}

// build compiles examples/name into a temporary directory and returns the
// binary's path.
func build(t testing.TB, name string) string {
	t.Helper()
	gocmd, err := exec.LookPath("go")
	if err != nil {
		t.Skipf("no go command: %v", err)
	}
	bin := filepath.Join(t.TempDir(), name)
	cmd := exec.Command(gocmd, "build", "-o", bin, "./"+name)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build ./%s: %v\n%s", name, err, out)
	}
	return bin
}

// shortTempDir returns a fresh directory with a short path, for Unix
// sockets (whose paths are limited to 107 bytes), removed at cleanup.
func shortTempDir(t testing.TB) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "pt")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

// runOK runs bin with args, fails the test unless it exits 0, and returns
// its stdout.
func runOK(t testing.TB, bin string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), runTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s %s: %v\nstdout:\n%s\nstderr:\n%s", filepath.Base(bin), strings.Join(args, " "), err, stdout.String(), stderr.String())
	}
	return stdout.String()
}

// proc is an example running in the background.
type proc struct {
	cmd    *exec.Cmd
	lines  chan string   // stdout, line by line; closed at EOF
	stderr *bytes.Buffer // read only after Wait
	waited bool
}

// start runs bin with args in the background. At cleanup a process still
// running is killed.
func start(t testing.TB, bin string, args ...string) *proc {
	t.Helper()
	cmd := exec.Command(bin, args...)
	p := &proc{cmd: cmd, lines: make(chan string, 64), stderr: new(bytes.Buffer)}
	cmd.Stderr = p.stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// The reader ends at EOF, when the process has exited.
	go func() {
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

// listening reads the next line of output, which must start with prefix,
// and returns the rest of it: the address the example listens on.
func (p *proc) listening(t testing.TB, prefix string) string {
	t.Helper()
	timer := time.NewTimer(runTimeout)
	defer timer.Stop()
	select {
	case line, ok := <-p.lines:
		if !ok {
			t.Fatalf("%s exited before listening; stderr:\n%s", p.cmd.Path, p.collectStderr())
		}
		if !strings.HasPrefix(line, prefix) {
			t.Fatalf("%s printed %q, want a line starting with %q", p.cmd.Path, line, prefix)
		}
		return strings.TrimSuffix(strings.TrimPrefix(line, prefix), "\n")
	case <-timer.C:
		t.Fatalf("%s did not print %q within %v", p.cmd.Path, prefix, runTimeout)
	}
	return ""
}

// collectStderr waits for the process, which must have exited, and returns
// its stderr.
func (p *proc) collectStderr() string {
	p.cmd.Wait()
	p.waited = true
	return p.stderr.String()
}

func (p *proc) signal(t testing.TB, sig os.Signal) {
	t.Helper()
	if err := p.cmd.Process.Signal(sig); err != nil {
		t.Fatal(err)
	}
}

// wait waits for the process to exit, fails the test unless it exited 0,
// and returns the rest of its output.
func (p *proc) wait(t testing.TB) string {
	t.Helper()
	var rest strings.Builder
	timer := time.NewTimer(runTimeout)
	defer timer.Stop()
	for done := false; !done; {
		select {
		case line, ok := <-p.lines:
			if !ok {
				done = true
				break
			}
			rest.WriteString(line)
		case <-timer.C:
			t.Fatalf("%s did not exit within %v; output so far:\n%s", p.cmd.Path, runTimeout, rest.String())
		}
	}
	err := p.cmd.Wait()
	p.waited = true
	if err != nil {
		t.Fatalf("%s: %v\nstdout:\n%s\nstderr:\n%s", p.cmd.Path, err, rest.String(), p.stderr.String())
	}
	return rest.String()
}

// wantInOrder checks that out contains every one of want, in order.
func wantInOrder(t testing.TB, out string, want ...string) {
	t.Helper()
	rest := out
	for _, w := range want {
		i := strings.Index(rest, w)
		if i < 0 {
			t.Errorf("output lacks %q (after the earlier matches); output:\n%s", w, out)
			return
		}
		rest = rest[i+len(w):]
	}
}
