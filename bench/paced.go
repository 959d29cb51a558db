package bench

import (
	"bufio"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
)

// Paced load (Scenario.Rate > 0): every connection sends Rate requests per
// second, connection g of n at offsets g/n of the period, so that the
// server sees a steady stream rather than bursts. The connections live in
// load-generator processes of their own (the load role, [LoadMain]), each
// holding at most pacedPerProc of them, so that a scenario can hold nearly
// as many connections as the server's open-file limit allows; they spread
// over several loopback source addresses (127.0.0.2, …), each with its own
// ephemeral ports.
//
// A slice is fixed in time: the parent sends every load process "slice T0
// WARMUP DURATION" (T0 in Unix nanoseconds); requests scheduled in
// [T0, T0+WARMUP) warm up, those in [T0+WARMUP, T0+WARMUP+DURATION) are
// measured, and the process answers "result {JSON}" ([pacedResult]) once
// every connection finished its last request. Latency counts from the
// scheduled send time, so an answer that comes late also charges the
// requests it delayed (no coordinated omission). A connection whose
// request fails (no answer within pacedAnswerTimeout, or an error) is
// counted as a failure and closed; a wrong answer fails the run.

const (
	// pacedPerProc is the most connections one load process holds, well
	// under a 20,000 open-file limit.
	pacedPerProc = 10000
	// pacedPerSource is the most connections given one source address.
	pacedPerSource = 5000
	// pacedAnswerTimeout bounds each paced request.
	pacedAnswerTimeout = 5 * time.Second
)

// sendAt is when connection g of n sends its k-th request (from 0) of a
// slice starting at t0, with the given period between a connection's
// requests: the connections' sends are spread evenly over each period.
func sendAt(t0 time.Time, g, n int, period time.Duration, k int64) time.Time {
	return t0.Add(time.Duration(int64(period)*int64(g)/int64(n)) + time.Duration(k)*period)
}

// pacedResult is what a load process reports for one slice.
type pacedResult struct {
	Sent     int64 `json:"sent"`     // requests scheduled in the measured window and sent
	Verified int64 `json:"verified"` // of those, answers verified
	Failures int64 `json:"failures"` // requests that failed (their connection was closed)
	// FirstFailure is the first failure's error, "" when none.
	FirstFailure string `json:"first_failure,omitempty"`
	// Wrong is the first wrong answer, if any: the run fails with it.
	Wrong *WrongAnswerError `json:"wrong,omitempty"`
	// CPUSeconds is the load process's CPU (user+system) in the measured
	// window, to tell it from other processes' (see others).
	CPUSeconds float64                `json:"cpu_seconds"`
	Latency    *hdrhistogram.Snapshot `json:"latency"` // of the verified answers, ns
}

// pacedConns is the load role's connections and how to drive them.
type pacedConns struct {
	callers  []caller // nil where a connection failed
	first, n int      // global index of callers[0], and connections in all processes
	period   time.Duration
	payload  int
	sys      System
	sc       Scenario
	seq      []int64 // the last request number used on each connection
}

// slice runs one paced slice (see the comment at the top of this file) and
// returns its result.
func (p *pacedConns) slice(ctx context.Context, t0 time.Time, warmup, d time.Duration) pacedResult {
	mstart, end := t0.Add(warmup), t0.Add(warmup+d)
	shards := make([]*shard, maxShards)
	for i := range shards {
		shards[i] = &shard{h: hdrhistogram.New(histMin, histMax, histSig)}
	}
	var sent, verified, failures atomic.Int64
	var mu sync.Mutex // guards res.FirstFailure and res.Wrong
	var res pacedResult
	var wg sync.WaitGroup
	cpu := make(chan float64, 1)
	go func() { // the CPU this process spends in the measured window
		sleepUntil(ctx, mstart)
		c0 := selfCPU()
		sleepUntil(ctx, end)
		cpu <- selfCPU() - c0
	}()
	for i, cl := range p.callers {
		if cl == nil {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			g := p.first + i
			payload := make([]byte, p.payload)
			fillPayload(payload, g)
			t := time.NewTimer(0)
			defer t.Stop()
			<-t.C
			for k := int64(0); ; k++ {
				at := sendAt(t0, g, p.n, p.period, k)
				if !at.Before(end) || ctx.Err() != nil {
					return
				}
				if w := time.Until(at); w > 0 {
					t.Reset(w)
					select {
					case <-t.C:
					case <-ctx.Done():
						return
					}
				}
				measured := !at.Before(mstart)
				if measured {
					sent.Add(1)
				}
				p.seq[i]++
				n := p.seq[i]
				stamp(payload, g, n)
				cl.setDeadline(time.Now().Add(pacedAnswerTimeout))
				got, err := cl.call(reqEcho, payload)
				lat := time.Since(at)
				if err == nil {
					err = verify(p.sys, p.sc, g, n, got, payload)
					if wa, ok := err.(*WrongAnswerError); ok {
						mu.Lock()
						if res.Wrong == nil {
							res.Wrong = wa
						}
						mu.Unlock()
						return
					}
				}
				if err != nil {
					failures.Add(1)
					mu.Lock()
					if res.FirstFailure == "" {
						res.FirstFailure = fmt.Sprintf("connection %d, request %d: %v", g, n, err)
					}
					mu.Unlock()
					cl.close()
					p.callers[i] = nil
					return
				}
				if measured {
					verified.Add(1)
					sh := shards[g%len(shards)]
					sh.mu.Lock()
					sh.h.RecordValue(int64(lat))
					sh.mu.Unlock()
				}
			}
		}()
	}
	wg.Wait()
	h := hdrhistogram.New(histMin, histMax, histSig)
	for _, sh := range shards {
		h.Merge(sh.h)
	}
	select {
	case res.CPUSeconds = <-cpu:
	case <-ctx.Done():
	}
	res.Sent, res.Verified, res.Failures, res.Latency = sent.Load(), verified.Load(), failures.Load(), h.Export()
	return res
}

// sleepUntil returns at t or when ctx is done.
func sleepUntil(ctx context.Context, t time.Time) {
	tm := time.NewTimer(time.Until(t))
	defer tm.Stop()
	select {
	case <-tm.C:
	case <-ctx.Done():
	}
}

// selfCPU is this process's user+system CPU seconds so far.
func selfCPU() float64 {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return tv(ru.Utime) + tv(ru.Stime)
}

// LoadMain is the load role of paced scenarios: it parses args (-load
// -addr ADDR -system NAME -scenario NAME -conns N -first G -total T -rate R
// -payload B [-hmac KEY] [-version V] [-local IP,IP,…]), opens its
// connections, prints "connected N SECONDS" and then runs one slice per
// "slice T0 WARMUP DURATION" line read from stdin, answering each with
// "result {JSON}". It returns when stdin closes.
func LoadMain(args []string, stdin io.Reader, stdout io.Writer) error {
	fs := flag.NewFlagSet("petrel-bench -load", flag.ContinueOnError)
	fs.Bool("load", true, "the load role")
	addr := fs.String("addr", "", "server address")
	system := fs.String("system", "", "the system under test, for error messages")
	scenario := fs.String("scenario", "", "the scenario, for error messages")
	conns := fs.Int("conns", 1, "connections of this process")
	first := fs.Int("first", 0, "global index of this process's first connection")
	total := fs.Int("total", 1, "connections of all load processes")
	rate := fs.Float64("rate", 1, "requests per second per connection")
	payload := fs.Int("payload", 64, "payload bytes")
	key := fs.String("hmac", "", "Petrel HMAC key")
	version := fs.Uint("version", 0, "Petrel protocol version")
	local := fs.String("local", "", "comma-separated source addresses")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *conns < 1 || *total < *first+*conns || *rate <= 0 {
		return fmt.Errorf("bench: load role: bad -conns %d, -first %d, -total %d or -rate %g", *conns, *first, *total, *rate)
	}
	raiseFileLimit()
	d := dialConfig{addr: *addr, version: uint8(*version), next: &atomicCounter{}}
	if *key != "" {
		d.hmac = []byte(*key)
	}
	for _, s := range strings.Split(*local, ",") {
		if s == "" {
			continue
		}
		ip := net.ParseIP(s)
		if ip == nil {
			return fmt.Errorf("bench: load role: bad source address %q", s)
		}
		d.local = append(d.local, ip)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	t := time.Now()
	callers, err := dialAll(ctx, ProtoPetrel, d, *conns, nil)
	if err != nil {
		return fmt.Errorf("bench: load role: %w", err)
	}
	defer closeAll(callers)
	p := &pacedConns{
		callers: callers, first: *first, n: *total,
		period:  time.Duration(float64(time.Second) / *rate),
		payload: *payload,
		sys:     System{Name: *system}, sc: Scenario{Name: *scenario},
		seq: make([]int64, len(callers)),
	}
	out := bufio.NewWriter(stdout)
	fmt.Fprintf(out, "connected %d %g\n", len(callers), time.Since(t).Seconds())
	out.Flush()
	in := bufio.NewScanner(stdin)
	for in.Scan() {
		f := strings.Fields(in.Text())
		if len(f) != 4 || f[0] != "slice" {
			fmt.Fprintf(out, "error unknown command %q\n", in.Text())
			out.Flush()
			continue
		}
		ns, err1 := strconv.ParseInt(f[1], 10, 64)
		w, err2 := time.ParseDuration(f[2])
		dur, err3 := time.ParseDuration(f[3])
		if err1 != nil || err2 != nil || err3 != nil {
			fmt.Fprintf(out, "error bad slice command %q\n", in.Text())
			out.Flush()
			continue
		}
		res := p.slice(ctx, time.Unix(0, ns), w, dur)
		b, err := json.Marshal(res)
		if err != nil {
			return err
		}
		fmt.Fprintf(out, "result %s\n", b)
		out.Flush()
	}
	return nil
}

// loadProc is a load-role process started by the parent. Its methods are
// called from one goroutine.
type loadProc struct {
	*child
	conns int
}

// startLoad starts the load processes of a paced scenario against the
// server at d.addr, sc.Conns connections in all, spread over source
// addresses from r.nextSource, and waits until every one has connected. It
// returns them and the time the slowest took to connect.
func (r *runner) startLoad(ctx context.Context, s System, sc Scenario, d dialConfig) ([]*loadProc, float64, error) {
	if _, ok := strings.CutPrefix(d.addr, "unix://"); ok {
		return nil, 0, fmt.Errorf("paced load runs over TCP only")
	}
	var local []string
	for range (sc.Conns + pacedPerSource - 1) / pacedPerSource {
		local = append(local, fmt.Sprintf("127.0.0.%d", 2+r.sources%250))
		r.sources++
	}
	var procs []*loadProc
	stopAll := func() {
		for _, p := range procs {
			p.stop()
		}
	}
	perProc := pacedPerProc
	if r.o.loadPerProc > 0 {
		perProc = r.o.loadPerProc
	}
	nproc := (sc.Conns + perProc - 1) / perProc
	for i := range nproc {
		first, last := sc.Conns*i/nproc, sc.Conns*(i+1)/nproc
		args := []string{"-load", "-addr", d.addr, "-system", s.Name, "-scenario", sc.Name,
			"-conns", strconv.Itoa(last - first), "-first", strconv.Itoa(first), "-total", strconv.Itoa(sc.Conns),
			"-rate", strconv.FormatFloat(sc.Rate, 'g', -1, 64), "-payload", strconv.Itoa(sc.Payload),
			"-version", strconv.Itoa(int(sc.Version)), "-local", strings.Join(local, ",")}
		if d.hmac != nil {
			args = append(args, "-hmac", string(d.hmac))
		}
		c, err := startProc(ctx, r.o.Command, s.Name+" load", args, "connected ", 2*time.Minute)
		if err != nil {
			stopAll()
			return nil, 0, err
		}
		procs = append(procs, &loadProc{child: c, conns: last - first})
	}
	// startProc waited for each "connected" line in turn; the processes
	// dialled concurrently, so the slowest one's time is the ramp-up.
	connect := 0.0
	for _, p := range procs {
		f := strings.Fields(p.addr)
		if len(f) == 2 {
			if v, err := strconv.ParseFloat(f[1], 64); err == nil {
				connect = max(connect, v)
			}
		}
	}
	return procs, connect, nil
}

// startProc starts a child role with args and waits, up to timeout, for
// the stdout line starting with ready, whose rest it keeps in addr. Its
// stdout lines may be long (a load process's results).
func startProc(ctx context.Context, command func([]string) *exec.Cmd, name string, args []string, ready string, timeout time.Duration) (*child, error) {
	cmd := command(args)
	c := &child{system: name, cmd: cmd, stderr: &tailBuffer{max: 4096}, lines: make(chan string, 4)}
	cmd.Stderr = c.stderr
	var err error
	if c.stdin, err = cmd.StdinPipe(); err != nil {
		return nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("bench: starting %s: %w", name, err)
	}
	go func() {
		defer close(c.lines)
		sc := bufio.NewScanner(stdout)
		sc.Buffer(make([]byte, 64<<10), 64<<20)
		for sc.Scan() {
			c.lines <- sc.Text()
		}
		io.Copy(io.Discard, stdout)
	}()
	line, err := c.expectWithin(ctx, ready, timeout)
	if err != nil {
		c.stop()
		return nil, err
	}
	c.addr = line
	return c, nil
}

// pacedSlice runs one slice of the paced scenario sc on ss and measures
// it: the server's figures over the measured window, the load processes'
// counts and latencies.
func (r *runner) pacedSlice(ctx context.Context, ss *session, sc Scenario) (Sample, error) {
	warmup := sc.Warmup
	if ss.slices > 0 {
		warmup /= 2
	}
	ss.slices++
	t0 := time.Now().Add(100 * time.Millisecond) // every process has it by then
	cmd := fmt.Sprintf("slice %d %s %s\n", t0.UnixNano(), warmup, sc.Duration)
	for _, p := range ss.procs {
		if _, err := io.WriteString(p.stdin, cmd); err != nil {
			return Sample{}, fmt.Errorf("bench: %s: %w (%s)", p.system, err, p.stderr.tail())
		}
	}
	sleepUntil(ctx, t0.Add(warmup))
	before, err := ss.c.stats(ctx, false)
	if err != nil {
		return Sample{}, err
	}
	m0 := readCPUTimes()
	t1 := time.Now()
	sleepUntil(ctx, t0.Add(warmup+sc.Duration))
	m1 := readCPUTimes()
	secs := time.Since(t1).Seconds()
	after, err := ss.c.stats(ctx, false)
	if err != nil {
		return Sample{}, err
	}
	if err := ctx.Err(); err != nil {
		return Sample{}, err
	}
	h := hdrhistogram.New(histMin, histMax, histSig)
	var smp Sample
	loadCPU := 0.0
	for _, p := range ss.procs {
		js, err := p.expectWithin(ctx, "result ", pacedAnswerTimeout+30*time.Second)
		if err != nil {
			return Sample{}, err
		}
		var res pacedResult
		if err := json.Unmarshal([]byte(js), &res); err != nil {
			return Sample{}, fmt.Errorf("bench: %s result: %w", p.system, err)
		}
		if res.Wrong != nil {
			return Sample{}, res.Wrong
		}
		if res.Latency != nil {
			h.Merge(hdrhistogram.Import(res.Latency))
		}
		smp.Sent += res.Sent
		smp.Requests += res.Verified
		smp.Failures += res.Failures
		if smp.FirstFailure == "" {
			smp.FirstFailure = res.FirstFailure
		}
		loadCPU += res.CPUSeconds
	}
	n := smp.Requests
	if n == 0 {
		return Sample{}, fmt.Errorf("no request completed in %v (%d failed: %s)", sc.Duration, smp.Failures, smp.FirstFailure)
	}
	server := after.CPUSeconds - before.CPUSeconds
	smp.OtherCPUs, smp.StealCPUs = others(m0, m1, server+loadCPU, secs)
	smp.Seconds = sc.Duration.Seconds()
	smp.Throughput = float64(n) / smp.Seconds
	smp.P50us = float64(h.ValueAtQuantile(50)) / 1e3
	smp.P99us = float64(h.ValueAtQuantile(99)) / 1e3
	smp.P999us = float64(h.ValueAtQuantile(99.9)) / 1e3
	smp.MaxUs = float64(h.Max()) / 1e3
	smp.CPUusPerReq = server / float64(n) * 1e6
	smp.LoadCPUusPerReq = loadCPU / float64(n) * 1e6
	smp.AllocsPerReq = float64(after.Mallocs-before.Mallocs) / float64(n)
	smp.SysUsPerReq = (after.SysSeconds - before.SysSeconds) / float64(n) * 1e6
	smp.CtxSwPerReq = float64(after.CtxSwitches-before.CtxSwitches) / float64(n)
	smp.RSSBytes, smp.Goroutines = after.RSSBytes, after.Goroutines
	smp.ConnectSeconds = ss.connect
	return smp, nil
}
