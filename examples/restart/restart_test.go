//go:build linux

package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
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

// runTimeout bounds every wait on a process.
const runTimeout = 60 * time.Second

// The client loop. Calls are counted per phase of the test (see the phase
// constants); a worker that made perPhase calls in a phase waits for the
// next, so the loop is bounded (workers × phases × perPhase calls, 4,200)
// and yet calls throughout every handover, whatever the machine's speed.
const (
	workers     = 4  // workers 0 and 1 share a Pool; 2 and 3 each redial every redialEvery calls
	poolSize    = 2  // connections of the shared pool
	redialEvery = 16 // calls per connection of a redialing worker
	perPhase    = 150
	maxAttempts = 3 // per call: the first and at most two retries
)

// The phases of the test, in order.
const (
	phaseGen1   = iota // the first process serves alone
	phaseStart1        // SIGHUP sent: the second process starts on the socket
	phaseDrain1        // "handed over" printed: the first process drains
	phaseGen2          // the first process exited
	phaseStart2        // SIGHUP to the second process
	phaseDrain2        // the second process drains
	phaseGen3          // the second exited; the third serves alone
	phaseDone          // the workers stop
)

var phaseNames = [...]string{"gen1", "start1", "drain1", "gen2", "start2", "drain2", "gen3"}

// TestHandover starts the example, keeps clients calling echo, hands the
// socket over twice in a row and stops the last process with SIGTERM.
//
// It asserts that no dial is refused, that every call gets its own payload
// back, that each process hands over to the next and exits 0, and that the
// last one serves and exits 0 after SIGTERM.
//
// Retries. A server closes its idle connections as its drain begins, so a
// request written at that moment may meet a closed socket: the call fails
// with EOF (the connection closed before any byte of an answer), a reset
// (the server closed with the request unread in its socket buffer) or a
// broken pipe (sending it failed). A graceful Petrel server answers every
// request it has read before closing, so each of those errors proves the
// request was never read; and echo is idempotent. Only such a call is
// retried, on a fresh connection. A dial whose protocol check meets the
// same fate (its connection was accepted by the old process just as it
// stopped accepting, and closed) is retried likewise. A refused connection
// (ECONNREFUSED), a partial answer, a wrong answer or a call failing
// maxAttempts times fails the test.
func TestHandover(t *testing.T) {
	setSubreaper(t)
	bin := build(t)

	out := newOutput(t)
	stderr, err := os.Create(filepath.Join(t.TempDir(), "stderr"))
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "-addr", "127.0.0.1:0")
	// Files, not io.Writers: every generation of the program inherits them,
	// and a copying goroutine would make Wait wait for the last one.
	cmd.Stdout, cmd.Stderr = out.w, stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	out.started()
	procs := newProcs(t, stderr)
	procs.add(cmd.Process.Pid)

	addr, pid := out.listening(t)
	if pid != cmd.Process.Pid {
		t.Fatalf("first process says pid %d, want %d", pid, cmd.Process.Pid)
	}

	lp := newLoop(t, addr)
	lp.waitCalls(t, phaseGen1)

	// Two handovers in a row: pid hands over to next.
	for i, start := range []int{phaseStart1, phaseStart2} {
		lp.advance(start)
		if err := syscall.Kill(pid, syscall.SIGHUP); err != nil {
			t.Fatal(err)
		}
		naddr, next := out.listening(t)
		if naddr != addr {
			t.Errorf("process %d listens on %s, want %s", next, naddr, addr)
		}
		procs.add(next)
		out.want(t, fmt.Sprintf("handed over to pid %d", next))
		lp.advance(start + 1) // drain
		if i == 0 {
			waitCmd(t, cmd) // the first process is the test's child
		} else {
			procs.wait(t, pid) // later ones were reparented to the test
		}
		lp.advance(start + 2)
		lp.waitCalls(t, start+2)
		pid = next
	}
	lp.advance(phaseDone)
	lp.stop()
	lp.report(t)

	// The last process serves a call of its own, then SIGTERM stops it.
	ctx, cancel := context.WithTimeout(context.Background(), runTimeout)
	defer cancel()
	c, err := client.Dial(ctx, client.Config{Addr: addr})
	if err != nil {
		t.Fatalf("the last process: %v", err)
	}
	resp, err := c.Call(ctx, "echo", []byte("last"))
	c.Close()
	if err != nil || string(resp.Payload) != "last" {
		t.Errorf("the last process answered %q, %v; want \"last\"", resp.Payload, err)
	}
	if err := syscall.Kill(pid, syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	procs.wait(t, pid)
	out.eof(t)
}

// loop is the client loop: workers calling echo until phaseDone.
type loop struct {
	addr string
	pool *client.Pool
	wg   sync.WaitGroup

	mu      sync.Mutex
	phase   int           // guarded by mu
	next    chan struct{} // closed when phase advances; guarded by mu
	errs    []string      // failures, reported by report; guarded by mu
	retries []string      // the errors that were retried; guarded by mu

	calls  [phaseDone]atomic.Int64 // calls answered, by phase
	dials  atomic.Int64            // connections dialed by redialing workers
	called chan struct{}           // a call was answered (non-blocking send)
}

func newLoop(t *testing.T, addr string) *loop {
	pool, err := client.NewPool(client.PoolConfig{Size: poolSize, Config: client.Config{Addr: addr, CallTimeout: 10 * time.Second}})
	if err != nil {
		t.Fatal(err)
	}
	lp := &loop{addr: addr, pool: pool, next: make(chan struct{}), called: make(chan struct{}, 1)}
	for w := range workers {
		lp.wg.Add(1)
		go lp.work(w)
	}
	t.Cleanup(lp.stop) // runs before the processes are killed
	return lp
}

// advance moves the loop to phase ph.
func (lp *loop) advance(ph int) {
	lp.mu.Lock()
	defer lp.mu.Unlock()
	if ph <= lp.phase {
		return
	}
	lp.phase = ph
	close(lp.next)
	lp.next = make(chan struct{})
}

// stop ends the workers and waits for them.
func (lp *loop) stop() {
	lp.advance(phaseDone)
	lp.wg.Wait()
	lp.pool.Close()
}

func (lp *loop) current() (int, chan struct{}) {
	lp.mu.Lock()
	defer lp.mu.Unlock()
	return lp.phase, lp.next
}

func (lp *loop) fail(format string, args ...any) {
	lp.mu.Lock()
	defer lp.mu.Unlock()
	lp.errs = append(lp.errs, fmt.Sprintf(format, args...))
}

// waitCalls waits until at least perPhase calls were answered in phase ph.
func (lp *loop) waitCalls(t *testing.T, ph int) {
	t.Helper()
	timer := time.NewTimer(runTimeout)
	defer timer.Stop()
	for lp.calls[ph].Load() < perPhase {
		select {
		case <-lp.called:
		case <-timer.C:
			t.Fatalf("phase %s: %d calls answered in %v, want %d", phaseNames[ph], lp.calls[ph].Load(), runTimeout, perPhase)
		}
	}
}

// caller makes one call on some connection.
type caller func(ctx context.Context, payload []byte) (client.Response, error)

// work is one worker: it calls echo until phaseDone, at most perPhase
// times per phase.
func (lp *loop) work(w int) {
	defer lp.wg.Done()
	var c *client.Client // a redialing worker's connection
	defer func() {
		if c != nil {
			c.Close()
		}
	}()
	used := 0 // calls on c
	call := func(ctx context.Context, payload []byte) (client.Response, error) {
		return lp.pool.Call(ctx, "echo", payload)
	}
	if w >= 2 {
		call = func(ctx context.Context, payload []byte) (client.Response, error) {
			if c != nil && (used == redialEvery || c.Err() != nil) {
				c.Close()
				c = nil
			}
			if c == nil {
				var err error
				if c, err = client.Dial(ctx, client.Config{Addr: lp.addr, CallTimeout: 10 * time.Second}); err != nil {
					return client.Response{}, err
				}
				lp.dials.Add(1)
				used = 0
			}
			used++
			return c.Call(ctx, "echo", payload)
		}
	}
	mine := [phaseDone]int{}
	for n := 0; ; n++ {
		ph, next := lp.current()
		if ph == phaseDone {
			return
		}
		if mine[ph] == perPhase {
			<-next
			continue
		}
		mine[ph]++
		payload := fmt.Appendf(nil, "worker %d call %d", w, n)
		if !lp.callOnce(w, ph, call, payload) {
			return
		}
		lp.calls[ph].Add(1)
		select {
		case lp.called <- struct{}{}:
		default:
		}
	}
}

// callOnce makes a call, retrying as TestHandover describes, and reports
// whether it was answered right.
func (lp *loop) callOnce(w, ph int, call caller, payload []byte) bool {
	ctx, cancel := context.WithTimeout(context.Background(), runTimeout)
	defer cancel()
	for attempt := 1; ; attempt++ {
		resp, err := call(ctx, payload)
		switch {
		case err == nil && resp.Status == 200 && string(resp.Payload) == string(payload):
			return true
		case err == nil:
			lp.fail("worker %d, phase %s: sent %q, answered %d %q", w, phaseNames[ph], payload, resp.Status, resp.Payload)
			return false
		case errors.Is(err, syscall.ECONNREFUSED):
			lp.fail("worker %d, phase %s: connection refused: %v", w, phaseNames[ph], err)
			return false
		case !neverRead(resp, err):
			lp.fail("worker %d, phase %s: %q: %v", w, phaseNames[ph], payload, err)
			return false
		case attempt == maxAttempts:
			lp.fail("worker %d, phase %s: %q failed %d times, last: %v", w, phaseNames[ph], payload, attempt, err)
			return false
		}
		lp.mu.Lock()
		lp.retries = append(lp.retries, fmt.Sprintf("worker %d, phase %s: %v", w, phaseNames[ph], err))
		lp.mu.Unlock()
	}
}

// neverRead reports whether a failed call proves that the server never
// read its request: no byte of an answer arrived (the header was not read,
// so Status is 0; an answer cut short gives io.ErrUnexpectedEOF, not EOF)
// and the connection ended by an EOF, a reset or a broken pipe.
func neverRead(resp client.Response, err error) bool {
	if resp.Status != 0 {
		return false
	}
	return errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)
}

// report fails the test with the workers' failures and logs the counts.
func (lp *loop) report(t *testing.T) {
	t.Helper()
	lp.mu.Lock()
	defer lp.mu.Unlock()
	var counts []string
	total := int64(0)
	for ph := range phaseDone {
		n := lp.calls[ph].Load()
		total += n
		counts = append(counts, fmt.Sprintf("%s %d", phaseNames[ph], n))
	}
	t.Logf("%d calls answered (%s); %d connections dialed by the redialing workers; %d retried:", total, strings.Join(counts, ", "), lp.dials.Load(), len(lp.retries))
	for _, r := range lp.retries {
		t.Logf("  retried: %s", r)
	}
	for _, e := range lp.errs {
		t.Error(e)
	}
	for _, ph := range []int{phaseDrain1, phaseDrain2} {
		if lp.calls[ph].Load() == 0 {
			t.Logf("note: no call was answered while a process drained (phase %s)", phaseNames[ph])
		}
	}
}

// output reads the lines that every generation of the program prints on
// its stdout, the write end of one pipe that they all inherit.
type output struct {
	w     *os.File    // the write end, closed in the test once the first process started
	lines chan string // closed at EOF: every generation exited
}

func newOutput(t *testing.T) *output {
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	o := &output{w: w, lines: make(chan string, 64)}
	go func() {
		defer close(o.lines)
		defer r.Close()
		sc := bufio.NewScanner(r)
		for sc.Scan() {
			o.lines <- sc.Text()
		}
	}()
	t.Cleanup(func() {
		o.w.Close()
		for range o.lines { // the processes are killed by now: EOF
		}
	})
	return o
}

// started closes the test's copy of the write end.
func (o *output) started() { o.w.Close() }

// next returns the next line.
func (o *output) next(t *testing.T) string {
	t.Helper()
	timer := time.NewTimer(runTimeout)
	defer timer.Stop()
	select {
	case line, ok := <-o.lines:
		if !ok {
			t.Fatal("the program's output ended")
		}
		return line
	case <-timer.C:
		t.Fatalf("no output within %v", runTimeout)
	}
	return ""
}

// listening reads a "listening on ADDR (pid N)" line.
func (o *output) listening(t *testing.T) (addr string, pid int) {
	t.Helper()
	line := o.next(t)
	if _, err := fmt.Sscanf(line, "listening on %s (pid %d)", &addr, &pid); err != nil {
		t.Fatalf("printed %q, want \"listening on ADDR (pid N)\": %v", line, err)
	}
	return addr, pid
}

func (o *output) want(t *testing.T, want string) {
	t.Helper()
	if line := o.next(t); line != want {
		t.Fatalf("printed %q, want %q", line, want)
	}
}

// eof checks that the output ends: nothing printed after the last line.
func (o *output) eof(t *testing.T) {
	t.Helper()
	timer := time.NewTimer(runTimeout)
	defer timer.Stop()
	select {
	case line, ok := <-o.lines:
		if ok {
			t.Errorf("printed %q after the last process stopped", line)
		}
	case <-timer.C:
		t.Errorf("output did not end within %v", runTimeout)
	}
}

// procs are the program's processes after the first: the test becomes
// their parent when their parent exits (the test is a child subreaper), and
// waits for them with wait4.
type procs struct {
	stderr *os.File
	mu     sync.Mutex
	live   map[int]bool // pids not yet waited for; guarded by mu
}

func newProcs(t *testing.T, stderr *os.File) *procs {
	p := &procs{stderr: stderr, live: map[int]bool{}}
	t.Cleanup(func() {
		p.mu.Lock()
		defer p.mu.Unlock()
		for pid := range p.live {
			syscall.Kill(pid, syscall.SIGKILL)
		}
		// Reap those that are the test's children by now; wait4 returns
		// ECHILD at once for any that is not.
		for pid := range p.live {
			var ws syscall.WaitStatus
			syscall.Wait4(pid, &ws, 0, nil)
		}
	})
	return p
}

func (p *procs) add(pid int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.live[pid] = true
}

// wait waits for pid, which must be the test's child by now, and fails the
// test unless it exited 0.
func (p *procs) wait(t *testing.T, pid int) {
	t.Helper()
	type result struct {
		ws  syscall.WaitStatus
		err error
	}
	done := make(chan result, 1)
	go func() {
		var r result
		for {
			_, r.err = syscall.Wait4(pid, &r.ws, 0, nil)
			if r.err != syscall.EINTR {
				break
			}
		}
		done <- r
	}()
	timer := time.NewTimer(runTimeout)
	defer timer.Stop()
	var r result
	select {
	case r = <-done:
	case <-timer.C:
		syscall.Kill(pid, syscall.SIGKILL)
		r = <-done
		r.err = fmt.Errorf("did not exit within %v", runTimeout)
	}
	p.mu.Lock()
	delete(p.live, pid)
	p.mu.Unlock()
	switch {
	case r.err != nil:
		t.Fatalf("process %d: %v\nstderr:\n%s", pid, r.err, p.stderrText())
	case !r.ws.Exited() || r.ws.ExitStatus() != 0:
		t.Fatalf("process %d ended with %v, want exit 0\nstderr:\n%s", pid, r.ws, p.stderrText())
	}
}

func (p *procs) stderrText() string {
	b, _ := os.ReadFile(p.stderr.Name())
	return string(b)
}

// waitCmd waits for the first process and fails the test unless it exited
// 0.
func waitCmd(t *testing.T, cmd *exec.Cmd) {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	timer := time.NewTimer(runTimeout)
	defer timer.Stop()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("first process: %v", err)
		}
	case <-timer.C:
		cmd.Process.Kill()
		<-done
		t.Fatalf("first process did not exit within %v", runTimeout)
	}
}

// setSubreaper makes the test process the child subreaper of its
// descendants (Linux): a process whose parent exits is reparented to the
// test instead of init, so that the test can wait for it and see its exit
// status. It lasts for the test binary's life, which holds only this test.
func setSubreaper(t *testing.T) {
	const prSetChildSubreaper = 36
	if _, _, errno := syscall.RawSyscall(syscall.SYS_PRCTL, prSetChildSubreaper, 1, 0); errno != 0 {
		t.Skipf("prctl(PR_SET_CHILD_SUBREAPER): %v", errno)
	}
}

// build compiles the example into a temporary directory.
func build(t *testing.T) string {
	t.Helper()
	gocmd, err := exec.LookPath("go")
	if err != nil {
		t.Skipf("no go command: %v", err)
	}
	bin := filepath.Join(t.TempDir(), "restart")
	if out, err := exec.Command(gocmd, "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}
