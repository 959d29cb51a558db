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

// Run runs every scenario on every system that supports it, interleaving
// systems and rotating their order on each repeat, and returns the report.
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
	r := &runner{o: o, dir: dir}
	rep := newReport(o)
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
		if sc.Idle {
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
		for k := 0; k < sc.Repeats; k++ {
			for j := range systems {
				i := (j + k) % len(systems) // rotate the order on each repeat
				if bar != nil {
					bar.Describe(fmt.Sprintf("%-16s %-15s", sc.Name, systems[i].Name))
				}
				s, err := r.point(ctx, systems[i], sc, k)
				if err != nil {
					return nil, err
				}
				runnable[i].Samples = append(runnable[i].Samples, s)
				if bar != nil {
					bar.Add(1)
				}
			}
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
	dir string
	n   int       // points started, for unique socket names
	tls *tlsSetup // made on first use
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

// fitIdle scales an idle scenario down to what the open-file limit allows.
func (r *runner) fitIdle(sc *Scenario, rep *Report) {
	lim := int(raiseFileLimit())
	if avail := lim - 256; sc.Conns > avail {
		rep.note("%s: open-file limit %d allows %d connections, not %d; scaled down", sc.Name, lim, max(avail, 1), sc.Conns)
		sc.Conns = max(avail, 1)
	}
}

// point runs one measurement of sc on s.
func (r *runner) point(ctx context.Context, s System, sc Scenario, repeat int) (Sample, error) {
	r.n++
	d := dialConfig{addr: "127.0.0.1:0"}
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
			return Sample{}, err
		}
		args = append(args, "-tls-cert", tc.certFile, "-tls-key", tc.keyFile)
		d.tls = tc.client
	}
	fail := func(err error) (Sample, error) {
		var wa *WrongAnswerError
		if errors.As(err, &wa) {
			return Sample{}, err
		}
		return Sample{}, &PointError{System: s.Name, Scenario: sc.Name, Err: err}
	}
	c, err := startChild(ctx, r.o.Command, s.Name, args)
	if err != nil {
		return fail(err)
	}
	d.addr = c.addr
	var smp Sample
	if sc.Idle {
		smp, err = r.idle(ctx, c, s, sc, d)
	} else {
		smp, err = r.load(ctx, c, s, sc, d)
	}
	if stopErr := c.stop(); err == nil && stopErr != nil {
		err = stopErr
	}
	if err != nil {
		return fail(err)
	}
	smp.Repeat = repeat
	return smp, nil
}
