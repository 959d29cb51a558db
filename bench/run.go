package bench

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"time"

	"github.com/schollz/progressbar/v3"
)

// Options configures [Run]. The zero value of every field but Systems and
// Scenarios is valid.
type Options struct {
	// Systems and Scenarios are what to run: every scenario on every system
	// that supports it.
	Systems   []System
	Scenarios []Scenario
	// Baseline names the system every ratio refers to; "" means "std". When
	// it did not run, "floor-std" is used instead and a note says so.
	Baseline string
	// Command builds the command that runs the server role with the given
	// arguments; nil means this executable (os.Executable) with them.
	Command func(args []string) *exec.Cmd
	// HMACKey is the key of HMAC scenarios; nil means a fixed test key.
	HMACKey []byte
	// Progress receives a progress bar; nil means none.
	Progress io.Writer
	// Full is recorded in the report.
	Full bool

	// fileLimit returns the open-file limit; nil means raiseFileLimit.
	// Tests lower it.
	fileLimit func() uint64
	// loadPerProc is the most connections a paced scenario's load process
	// holds; 0 means pacedPerProc. Tests lower it.
	loadPerProc int
}

// WrongAnswerError is a verification failure: a system answered a request
// with something other than the request's payload.
type WrongAnswerError struct {
	System, Scenario string
	Conn             int   // the connection's index
	Request          int64 // the request's number on that connection
	Detail           string
}

// Error implements error, naming the system, scenario, connection and request.
func (e *WrongAnswerError) Error() string {
	return fmt.Sprintf("bench: WRONG ANSWER from system %q in scenario %q (connection %d, request %d): %s",
		e.System, e.Scenario, e.Conn, e.Request, e.Detail)
}

// PointError is any other failure of one measurement.
type PointError struct {
	System, Scenario string
	Err              error
}

// Error implements error.
func (e *PointError) Error() string {
	return fmt.Sprintf("bench: system %q in scenario %q failed: %v", e.System, e.Scenario, e.Err)
}

// Unwrap returns the underlying failure.
func (e *PointError) Unwrap() error { return e.Err }

// Run runs every scenario on every system that supports it, in rounds that
// measure every system once each, rotating their order from round to round
// (see the package doc), and returns the report.
// The first failure, and in particular the first wrong answer, stops the
// run and is returned.
func Run(ctx context.Context, o Options) (*Report, error) {
	if o.Baseline == "" {
		o.Baseline = "std"
	}
	if o.Command == nil {
		exe, err := os.Executable()
		if err != nil {
			return nil, err
		}
		o.Command = func(args []string) *exec.Cmd { return exec.Command(exe, args...) }
	}
	if o.HMACKey == nil {
		o.HMACKey = []byte("petrel-bench-key")
	}
	dir, err := os.MkdirTemp("", "petrel-bench-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	rep := newReport(o)
	r := &runner{o: o, dir: dir, rep: rep}
	if lim := raiseFileLimit(); lim < 20000 {
		rep.note("open-file limit is %d", lim)
	}

	// Plan every point first, for the progress bar.
	total := 0
	for _, sc := range o.Scenarios {
		res := ScenarioResult{Scenario: sc, Description: sc.Describe()}
		for _, s := range o.Systems {
			why := s.why(sc)
			res.Results = append(res.Results, &Result{System: s.Name, Skipped: why})
			if why == "" {
				total += sc.Repeats
			}
		}
		rep.Scenarios = append(rep.Scenarios, &res)
	}
	var bar *progressbar.ProgressBar
	if o.Progress != nil {
		bar = progressbar.NewOptions(total,
			progressbar.OptionSetWriter(o.Progress),
			progressbar.OptionSetWidth(30),
			progressbar.OptionShowCount(),
			progressbar.OptionSetElapsedTime(true),
			progressbar.OptionSetPredictTime(true),
			progressbar.OptionClearOnFinish(),
			progressbar.OptionThrottle(100*time.Millisecond))
		defer bar.Close()
	}

	start := time.Now()
	for _, res := range rep.Scenarios {
		sc := res.Scenario
		if sc.Idle || sc.Rate > 0 {
			r.fitIdle(&sc, rep)
			res.Scenario = sc
			res.Description = sc.Describe()
		}
		var runnable []*Result
		var systems []System
		for i, s := range o.Systems {
			if res.Results[i].Skipped == "" {
				runnable = append(runnable, res.Results[i])
				systems = append(systems, s)
			}
		}
		step := func(system string) {
			if bar != nil {
				bar.Describe(fmt.Sprintf("%-16s %-15s", sc.Name, system))
			}
		}
		done := func() {
			if bar != nil {
				bar.Add(1)
			}
		}
		if sc.Idle {
			err = r.idleRounds(ctx, sc, systems, runnable, step, done)
		} else {
			err = r.loadRounds(ctx, sc, systems, runnable, step, done)
		}
		if err != nil {
			return nil, err
		}
	}
	if bar != nil {
		bar.Finish()
	}
	rep.Seconds = time.Since(start).Seconds()
	rep.summarize()
	return rep, nil
}

type runner struct {
	o   Options
	rep *Report // for notes
	dir string
	n   int // points started, for unique socket names
	// sources counts the loopback source addresses given to paced load
	// processes, so that each session gets fresh ones (the last one's
	// ports may still be in TIME_WAIT).
	sources int
	tls     *tlsSetup // made on first use
}

// tlsSetup is the certificate of TLS scenarios.
type tlsSetup struct {
	certFile, keyFile string
	client            *tls.Config
}

func (r *runner) tlsConfig() (*tlsSetup, error) {
	if r.tls == nil {
		c, k, cl, err := tlsFiles(r.dir)
		if err != nil {
			return nil, fmt.Errorf("bench: making a TLS certificate: %w", err)
		}
		r.tls = &tlsSetup{certFile: c, keyFile: k, client: cl}
	}
	return r.tls, nil
}

// fitIdle scales an idle or paced scenario down to what the open-file
// limit allows: the connections of an idle scenario and the server of a
// paced one live in one process (the server's own files are few, hence
// the smaller margin).
func (r *runner) fitIdle(sc *Scenario, rep *Report) {
	lim := int(raiseFileLimit())
	margin := fileMargin
	if sc.Rate > 0 {
		margin = pacedMargin
	}
	if avail := lim - margin; sc.Conns > avail {
		rep.note("%s: open-file limit %d allows %d connections, not %d; scaled down", sc.Name, lim, max(avail, 1), sc.Conns)
		sc.Conns = max(avail, 1)
	}
}

// maxRetries is how many times a disturbed load slice is measured again.
const maxRetries = 2

// disturbed reports whether other processes or the hypervisor took enough
// CPU during a slice to distort it.
func disturbed(s Sample) bool { return s.OtherCPUs+s.StealCPUs > busyCPUs }

// loadRounds measures a load scenario. Every system's server and
// connections stay up for the whole scenario; each round measures one
// slice of every system, in an order rotated on each round, so that a slow
// drift of the machine touches every system alike and each round's ratios
// to the baseline are paired. A slice disturbed by other processes is
// measured again, up to maxRetries times (except a paced scenario's: its
// slices are long, and a disturbed one is only flagged). When the open-file limit cannot
// hold every system's connections at once, each slice opens and closes its
// own server and connections instead, and a note says so.
func (r *runner) loadRounds(ctx context.Context, sc Scenario, systems []System, results []*Result, step func(string), done func()) (err error) {
	sessions := make([]*session, len(systems))
	closeSession := func(i int) error {
		ss := sessions[i]
		if ss == nil {
			return nil
		}
		sessions[i] = nil
		if err := ss.close(); err != nil {
			return r.fail(systems[i], sc, err)
		}
		return nil
	}
	defer func() {
		for i := range sessions {
			if stopErr := closeSession(i); err == nil {
				err = stopErr
			}
		}
	}()
	together := true
	limit := raiseFileLimit
	if r.o.fileLimit != nil {
		limit = r.o.fileLimit
	}
	// A paced scenario's connections live in load processes of their own.
	if need, lim := len(systems)*(sc.Conns+sc.SleepConns)+fileMargin, int(limit()); sc.Rate == 0 && need > lim {
		together = false
		r.rep.note("%s: the open-file limit (%d) cannot hold all %d systems' connections at once; each slice started its own server and connections", sc.Name, lim, len(systems))
	}
	open := func(i int) error {
		step(systems[i].Name)
		ss, err := r.open(ctx, systems[i], sc)
		if err != nil {
			return r.fail(systems[i], sc, err)
		}
		sessions[i] = ss
		return nil
	}
	for i := range systems {
		if !together {
			break
		}
		if err := open(i); err != nil {
			return err
		}
	}
	for k := range sc.Repeats {
		for j := range systems {
			i := (j + k) % len(systems)
			if !together {
				if err := open(i); err != nil {
					return err
				}
			}
			step(systems[i].Name)
			smp, err := r.slice(ctx, sessions[i], sc)
			retries := maxRetries
			if sc.Rate > 0 {
				retries = 0 // long slices; a disturbed one is flagged, not redone
			}
			for try := 0; err == nil && disturbed(smp) && try < retries; try++ {
				retried := smp.Retried + 1
				smp, err = r.slice(ctx, sessions[i], sc)
				smp.Retried = retried
			}
			if err != nil {
				return r.fail(systems[i], sc, err)
			}
			if !together {
				if err := closeSession(i); err != nil {
					return err
				}
			}
			smp.Repeat = k
			results[i].Samples = append(results[i].Samples, smp)
			done()
		}
	}
	return nil
}

// fileMargin is the open files a run needs beside its connections, and
// pacedMargin those a server needs beside its connections.
const fileMargin, pacedMargin = 256, 64

// idleRounds measures an idle scenario: each point is a fresh server
// process, so that its memory is the connections' alone; systems are
// interleaved and rotated as in loadRounds.
func (r *runner) idleRounds(ctx context.Context, sc Scenario, systems []System, results []*Result, step func(string), done func()) error {
	for k := range sc.Repeats {
		for j := range systems {
			i := (j + k) % len(systems)
			step(systems[i].Name)
			smp, err := r.idlePoint(ctx, systems[i], sc)
			if err != nil {
				return r.fail(systems[i], sc, err)
			}
			smp.Repeat = k
			results[i].Samples = append(results[i].Samples, smp)
			done()
		}
	}
	return nil
}

// fail wraps a failure of s in sc as a *PointError, leaving wrong answers
// as they are.
func (r *runner) fail(s System, sc Scenario, err error) error {
	var wa *WrongAnswerError
	var pe *PointError
	if errors.As(err, &wa) || errors.As(err, &pe) {
		return err
	}
	return &PointError{System: s.Name, Scenario: sc.Name, Err: err}
}

// start starts s's server process for sc and returns it with the dial
// configuration that reaches it.
func (r *runner) start(ctx context.Context, s System, sc Scenario) (*child, dialConfig, error) {
	r.n++
	d := dialConfig{addr: "127.0.0.1:0", version: sc.Version}
	if sc.Unix {
		d.addr = "unix://" + filepath.Join(r.dir, fmt.Sprintf("s%d.sock", r.n))
	}
	args := []string{"-serve", s.Name, "-addr", d.addr}
	if sc.Slow > 0 {
		args = append(args, "-slow", sc.Slow.String())
	}
	if sc.HMAC {
		args = append(args, "-hmac", string(r.o.HMACKey))
		d.hmac = r.o.HMACKey
	}
	if sc.TLS {
		tc, err := r.tlsConfig()
		if err != nil {
			return nil, d, err
		}
		args = append(args, "-tls-cert", tc.certFile, "-tls-key", tc.keyFile)
		d.tls = tc.client
	}
	c, err := startChild(ctx, r.o.Command, s.Name, args)
	if err != nil {
		return nil, d, err
	}
	d.addr = c.addr
	return c, d, nil
}

// idlePoint runs one measurement of the idle scenario sc on s.
func (r *runner) idlePoint(ctx context.Context, s System, sc Scenario) (Sample, error) {
	c, d, err := r.start(ctx, s, sc)
	if err != nil {
		return Sample{}, err
	}
	smp, err := r.idle(ctx, c, s, sc, d)
	if stopErr := c.stop(); err == nil && stopErr != nil {
		err = stopErr
	}
	return smp, err
}
