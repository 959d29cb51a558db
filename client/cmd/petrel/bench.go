package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"math"
	"math/bits"
	"os"
	"os/signal"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/petrel-rpc/petrel/client"
	"github.com/petrel-rpc/petrel/codec"
)

// Bench defaults and bounds.
const (
	defaultConns    = 10
	defaultRequests = 1000
	// maxConns bounds -c: each connection has its own histogram (35 KB).
	maxConns = 1000
	// progressEvery is how often the progress line is redrawn.
	progressEvery = 250 * time.Millisecond
)

// benchConfig is what the bench subcommand's arguments say.
type benchConfig struct {
	conns    int
	total    int64         // requests in all; 0 when running for duration
	duration time.Duration // how long to run; 0 when running total requests
	req      string
	payload  []byte
}

func parseBench(args []string, stdin io.Reader, limit uint32, stderr io.Writer) (benchConfig, error) {
	fs := flag.NewFlagSet("petrel bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var (
		conns    = fs.Int("c", defaultConns, "`connections`, each running one request at a time")
		total    = fs.Int64("n", defaultRequests, "`requests` to send in all")
		duration = fs.Duration("d", 0, "run for this `duration` instead of -n requests")
		size     = fs.Int("size", 0, "send this many random `bytes` as the payload")
	)
	fs.Usage = func() {
		fmt.Fprint(stderr, "usage: petrel [flags] bench [-c CONNS] [-n N | -d DURATION] [-size N] REQ [PAYLOAD]\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return benchConfig{}, &flagError{err}
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	bc := benchConfig{conns: *conns, total: *total, duration: *duration}
	rest := fs.Args()
	switch {
	case len(rest) < 1 || len(rest) > 2:
		return bc, &usageError{"usage: petrel [flags] bench [-c CONNS] [-n N | -d DURATION] [-size N] REQ [PAYLOAD]"}
	case bc.conns < 1 || bc.conns > maxConns:
		return bc, &usageError{fmt.Sprintf("bench: -c %d: want 1 to %d connections", bc.conns, maxConns)}
	case set["n"] && set["d"]:
		return bc, &usageError{"bench: -n and -d go separately: give one"}
	case set["d"] && bc.duration <= 0:
		return bc, &usageError{"bench: -d must be positive"}
	case bc.total < 1:
		return bc, &usageError{"bench: -n must be positive"}
	case set["size"] && len(rest) == 2:
		return bc, &usageError{"bench: -size and PAYLOAD are two payloads: give one"}
	case *size < 0 || uint64(*size) > uint64(codec.Options{MaxPayload: limit}.Limit()):
		return bc, &usageError{fmt.Sprintf("bench: -size %d: want 0 up to the payload limit", *size)}
	}
	if set["d"] {
		bc.total = 0
	} else {
		bc.conns = int(min(int64(bc.conns), bc.total))
	}
	bc.req = rest[0]
	var err error
	switch {
	case len(rest) == 2:
		if bc.payload, err = readPayload(rest[1], stdin, limit); err != nil {
			return bc, err
		}
	case *size > 0:
		bc.payload = make([]byte, *size)
		rand.Read(bc.payload)
	}
	return bc, nil
}

// flagError is an error from parsing bench's flags, which the flag set has
// reported already.
type flagError struct{ err error }

func (e *flagError) Error() string { return e.err.Error() }
func (e *flagError) Unwrap() error { return e.err }

// benchRun is one run of the load generator: one goroutine per
// connection, each owning its client and its benchWorker.
type benchRun struct {
	cfg         client.Config
	bc          benchConfig
	echo        bool         // check that answers equal the payload
	tickets     atomic.Int64 // requests claimed so far (with bc.total)
	deadline    time.Time    // when to stop claiming (with bc.duration)
	interrupted atomic.Bool  // SIGINT: stop, and count nothing more
	workers     []*benchWorker

	mu      sync.Mutex       // guards clients and closing
	clients []*client.Client // by worker; nil once a worker gave up
	closing bool             // interrupt closed the clients: none may be added
}

// benchWorker is one connection's measurements, written by its goroutine
// only (done and failed are read by the progress line as it runs; the
// rest once the goroutine has exited).
type benchWorker struct {
	hist     histogram
	statuses map[codec.Status]uint64
	errs     map[string]*errCount // by kind
	done     atomic.Uint64        // calls made
	failed   atomic.Uint64        // calls that failed, dials that failed
}

type errCount struct {
	n       uint64
	example string
}

func (w *benchWorker) addErr(kind string, err error) {
	e := w.errs[kind]
	if e == nil {
		e = &errCount{example: oneLine(err.Error())}
		w.errs[kind] = e
	}
	e.n++
	w.failed.Add(1)
}

// errMismatch is an echo answer that differs from the payload sent.
var errMismatch = errors.New("echo answer differs from the payload sent")

// errKind names the kind of a call's or a dial's error, for counting.
func errKind(err error) string {
	switch {
	case errors.Is(err, errMismatch):
		return "echo mismatch"
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, os.ErrDeadlineExceeded):
		return "timeout"
	case errors.Is(err, syscall.ECONNREFUSED):
		return "connection refused"
	case errors.Is(err, syscall.ECONNRESET):
		return "connection reset"
	case errors.Is(err, syscall.EPIPE):
		return "broken pipe"
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return "connection closed by the server"
	case errors.Is(err, codec.ErrBadMAC):
		return "bad MAC"
	case errors.Is(err, client.ErrBadAnswer):
		return "malformed answer"
	case errors.Is(err, codec.ErrPayloadTooLarge):
		return "payload over the limit"
	case errors.Is(err, client.ErrProtocolCheck):
		return "protocol check failed"
	case errors.Is(err, client.ErrClosed):
		return "client closed"
	}
	return "other"
}

// record counts one call's outcome.
func (w *benchWorker) record(lat time.Duration, resp client.Response, err error, want []byte, echo bool) {
	w.done.Add(1)
	var se *codec.StatusError
	switch {
	case err == nil && echo && !bytes.Equal(resp.Payload, want):
		w.addErr("echo mismatch", fmt.Errorf("%w: %d bytes, want %d", errMismatch, len(resp.Payload), len(want)))
	case err == nil || (errors.As(err, &se) && !errors.Is(err, codec.ErrBadMAC)):
		w.statuses[resp.Status]++
		w.hist.add(lat)
	default:
		w.addErr(errKind(err), err)
	}
}

func bench(o options, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	bc, err := parseBench(args, stdin, o.cfg.MaxPayload, stderr)
	var fe *flagError
	switch {
	case errors.Is(err, flag.ErrHelp):
		return exitOK
	case errors.As(err, &fe): // reported already by the flag set
		return exitUsage
	case err != nil:
		return fail(stderr, err)
	}
	cfg := o.cfg
	cfg.CallTimeout = o.timeout
	ctx, stopSignals := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stopSignals()

	b := &benchRun{cfg: cfg, bc: bc, echo: bc.req == "echo", clients: make([]*client.Client, bc.conns)}
	for range bc.conns {
		b.workers = append(b.workers, &benchWorker{statuses: map[codec.Status]uint64{}, errs: map[string]*errCount{}})
	}
	// Connect first: the clock starts once every connection is up.
	if err := b.dialAll(ctx); err != nil {
		b.closeAll()
		if ctx.Err() != nil {
			fmt.Fprintln(stderr, "petrel: bench: interrupted while dialing")
			return exitFailed
		}
		return fail(stderr, err)
	}
	version := b.clients[0].Version()
	interruptDone := make(chan struct{})
	stopInterrupt := context.AfterFunc(ctx, func() {
		defer close(interruptDone)
		b.interrupt()
	})

	start := time.Now()
	b.deadline = start.Add(bc.duration)
	var progress sync.WaitGroup
	progressStop := make(chan struct{})
	if isTerminal(stderr) {
		progress.Go(func() { b.progress(stderr, start, progressStop) })
	}
	var wg sync.WaitGroup
	for i := range b.workers {
		wg.Go(func() { b.work(ctx, i) })
	}
	wg.Wait()
	elapsed := time.Since(start)
	close(progressStop)
	progress.Wait()
	if !stopInterrupt() {
		<-interruptDone
	}
	b.closeAll()
	return b.report(stdout, elapsed, version)
}

// dialAll dials every connection, in parallel.
func (b *benchRun) dialAll(ctx context.Context) error {
	var wg sync.WaitGroup
	errs := make([]error, len(b.clients))
	for i := range b.clients {
		wg.Go(func() { b.clients[i], errs[i] = client.Dial(ctx, b.cfg) })
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

// interrupt stops the run at once: it closes every connection, so calls
// in flight return (their outcome is not counted).
func (b *benchRun) interrupt() {
	b.interrupted.Store(true)
	b.mu.Lock()
	defer b.mu.Unlock()
	b.closing = true
	for _, c := range b.clients {
		if c != nil {
			c.Close()
		}
	}
}

func (b *benchRun) closeAll() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.closing = true
	for i, c := range b.clients {
		if c != nil {
			c.Close()
			b.clients[i] = nil
		}
	}
}

// work runs worker i's calls until the requests are all claimed, the time
// is up, the run is interrupted or its connection cannot be replaced.
func (b *benchRun) work(ctx context.Context, i int) {
	w := b.workers[i]
	b.mu.Lock()
	c := b.clients[i]
	b.mu.Unlock()
	dst := make([]byte, 0, max(len(b.bc.payload), 4<<10))
	for !b.interrupted.Load() {
		if b.bc.total > 0 && b.tickets.Add(1) > b.bc.total {
			return
		}
		start := time.Now()
		if b.bc.total == 0 && !start.Before(b.deadline) {
			return
		}
		// A context that cannot be cancelled keeps the call free of
		// allocations; an interrupt ends it by closing the client.
		resp, err := c.CallInto(context.Background(), b.bc.req, b.bc.payload, dst)
		lat := time.Since(start)
		if err != nil && b.interrupted.Load() {
			return // cut short by the interrupt
		}
		if cap(resp.Payload) > cap(dst) {
			dst = resp.Payload[:0] // grown for a bigger answer: keep it
		}
		w.record(lat, resp, err, b.bc.payload, b.echo)
		if c.Err() != nil {
			if c = b.redial(ctx, i); c == nil {
				return
			}
		}
	}
}

// redial replaces worker i's broken connection; it returns nil when that
// fails or the run is being interrupted.
func (b *benchRun) redial(ctx context.Context, i int) *client.Client {
	c, err := client.Dial(ctx, b.cfg)
	if err != nil {
		if !b.interrupted.Load() {
			b.workers[i].addErr("dial: "+errKind(err), err)
		}
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if old := b.clients[i]; old != nil {
		old.Close()
		b.clients[i] = nil
	}
	if err != nil {
		return nil
	}
	if b.closing {
		c.Close()
		return nil
	}
	b.clients[i] = c
	return c
}

// progress redraws a progress line on stderr until stop is closed, then
// erases it.
func (b *benchRun) progress(stderr io.Writer, start time.Time, stop <-chan struct{}) {
	t := time.NewTicker(progressEvery)
	defer t.Stop()
	for {
		select {
		case <-stop:
			fmt.Fprint(stderr, "\r\033[K")
			return
		case now := <-t.C:
			var done, failed uint64
			for _, w := range b.workers {
				done += w.done.Load()
				failed += w.failed.Load()
			}
			el := now.Sub(start)
			fmt.Fprintf(stderr, "\r\033[K%d requests, %d errors, %.0f requests/s, %v", done, failed, float64(done)/el.Seconds(), el.Round(time.Second/10))
		}
	}
}

// report prints the run's results and returns the exit status: 0 when
// every answer was 2xx and nothing failed.
func (b *benchRun) report(stdout io.Writer, elapsed time.Duration, version uint8) int {
	var hist histogram
	statuses := map[codec.Status]uint64{}
	errs := map[string]*errCount{}
	var calls uint64
	for _, w := range b.workers {
		hist.merge(&w.hist)
		calls += w.done.Load()
		for s, n := range w.statuses {
			statuses[s] += n
		}
		for k, e := range w.errs {
			if errs[k] == nil {
				errs[k] = &errCount{example: e.example}
			}
			errs[k].n += e.n
		}
	}
	var out strings.Builder
	fmt.Fprintf(&out, "petrel bench: %q, %d-byte payload, %d connections, protocol %d\n", b.bc.req, len(b.bc.payload), b.bc.conns, version)
	note := ""
	if b.interrupted.Load() {
		note = " (interrupted)"
	}
	fmt.Fprintf(&out, "requests:  %d in %v%s\n", calls, sig3(elapsed), note)
	fmt.Fprintf(&out, "rate:      %.1f requests/s\n", float64(calls)/elapsed.Seconds())
	if hist.n > 0 {
		fmt.Fprintf(&out, "latency:   p50 %v, p90 %v, p99 %v, max %v\n",
			sig3(hist.quantile(0.50)), sig3(hist.quantile(0.90)), sig3(hist.quantile(0.99)), sig3(hist.max))
	}
	code := exitOK
	var parts []string
	for _, s := range slices.Sorted(maps.Keys(statuses)) {
		parts = append(parts, fmt.Sprintf("%d: %d", s, statuses[s]))
		if !s.IsSuccess() {
			code = exitStatus
		}
	}
	if len(parts) == 0 {
		parts = []string{"none"}
	}
	fmt.Fprintf(&out, "statuses:  %s\n", strings.Join(parts, ", "))
	if len(errs) == 0 {
		fmt.Fprintf(&out, "errors:    none\n")
	}
	for i, k := range slices.Sorted(maps.Keys(errs)) {
		label := "errors:   "
		if i > 0 {
			label = "          "
		}
		fmt.Fprintf(&out, "%s %d %s (%s)\n", label, errs[k].n, k, errs[k].example)
		code = exitStatus
	}
	io.WriteString(stdout, out.String())
	return code
}

// sig3 rounds d to three significant digits.
func sig3(d time.Duration) time.Duration {
	unit := time.Duration(1)
	for v := d; v >= 1000; v /= 10 {
		unit *= 10
	}
	return d.Round(unit)
}

// The histogram counts latencies in log-linear buckets: exact below 256
// ns, then 128 buckets per power of two, so that a bucket is less than 1%
// wide relative to its values. Latencies from 2^40 ns (18 minutes) up
// share the last bucket.
const (
	histSubBits = 7
	histSub     = 1 << histSubBits // buckets per power of two
	histMaxNs   = 1<<40 - 1
	histBuckets = (40 - histSubBits + 1) * histSub // bucket(histMaxNs) + 1
)

// histogram is a fixed-size latency histogram; the zero value is empty.
type histogram struct {
	counts [histBuckets]uint64
	n      uint64
	max    time.Duration // exact
}

func bucket(ns uint64) int {
	if ns < 2*histSub {
		return int(ns)
	}
	s := bits.Len64(ns) - histSubBits - 1
	return s*histSub + int(ns>>s)
}

// bucketTop returns the largest value counted in bucket i.
func bucketTop(i int) uint64 {
	if i < 2*histSub {
		return uint64(i)
	}
	s := i/histSub - 1
	m := uint64(i - s*histSub)
	return (m+1)<<s - 1
}

func (h *histogram) add(d time.Duration) {
	ns := uint64(max(d, 0))
	h.counts[bucket(min(ns, histMaxNs))]++
	h.n++
	h.max = max(h.max, d)
}

func (h *histogram) merge(o *histogram) {
	for i, n := range o.counts {
		h.counts[i] += n
	}
	h.n += o.n
	h.max = max(h.max, o.max)
}

// quantile returns the q-quantile (0 < q <= 1) of the latencies counted:
// the top of the bucket holding it, and never more than the maximum.
func (h *histogram) quantile(q float64) time.Duration {
	rank := max(min(uint64(math.Ceil(q*float64(h.n))), h.n), 1)
	var seen uint64
	for i, n := range h.counts {
		if seen += n; seen >= rank {
			return min(time.Duration(bucketTop(i)), h.max)
		}
	}
	return h.max
}
