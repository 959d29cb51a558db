package bench

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
)

// Sample is one measurement of one system in one scenario.
type Sample struct {
	Repeat int `json:"repeat"`
	// Load scenarios.
	Requests     int64   `json:"requests,omitempty"`       // answers verified in the measured window
	Seconds      float64 `json:"seconds,omitempty"`        // the measured window
	Throughput   float64 `json:"throughput,omitempty"`     // requests per second
	P50us        float64 `json:"p50_us,omitempty"`         // latency percentiles, microseconds
	P99us        float64 `json:"p99_us,omitempty"`         //
	P999us       float64 `json:"p999_us,omitempty"`        //
	CPUusPerReq  float64 `json:"cpu_us_per_req,omitempty"` // server CPU (user+system) per request
	AllocsPerReq float64 `json:"allocs_per_req"`           // server heap allocations per request
	SysUsPerReq  float64 `json:"sys_us_per_req,omitempty"` // the kernel's part of CPUusPerReq
	// CtxSwPerReq is the server's context switches per request: about one
	// for a server that sleeps between requests, more when each request
	// also wakes a second thread.
	CtxSwPerReq float64 `json:"ctxsw_per_req,omitempty"`
	// Both.
	RSSBytes   int64 `json:"rss_bytes"`  // server RSS at the end
	Goroutines int   `json:"goroutines"` // server goroutines at the end
	// Idle scenarios.
	Conns             int     `json:"conns,omitempty"`
	RSSPerConn        float64 `json:"rss_per_conn_bytes,omitempty"`
	HeapPerConn       float64 `json:"heap_per_conn_bytes,omitempty"`
	GoroutinesPerConn float64 `json:"goroutines_per_conn,omitempty"`
	// What else the machine did during a load point, in CPUs: other
	// processes (beyond the server and the load generator) and hypervisor
	// steal. Anything much above zero disturbs the figures.
	OtherCPUs float64 `json:"other_cpus"`
	StealCPUs float64 `json:"steal_cpus"`
	// Retried is how many earlier measurements of this slice were
	// discarded because other processes disturbed them.
	Retried        int     `json:"retried,omitempty"`
	ConnectSeconds float64 `json:"connect_seconds,omitempty"`
	// Paced scenarios (Scenario.Rate): requests sent in the measured
	// window (Requests of them answered and verified), requests that
	// failed (no answer in time, or an error; their connection is closed
	// and stays so), the first failure, and the slowest answer.
	Sent         int64   `json:"sent,omitempty"`
	Failures     int64   `json:"failures,omitempty"`
	FirstFailure string  `json:"first_failure,omitempty"`
	MaxUs        float64 `json:"max_us,omitempty"`
	// LoadCPUusPerReq is the load processes' CPU per verified answer.
	LoadCPUusPerReq float64 `json:"load_cpu_us_per_req,omitempty"`
	// Scenarios with SleepConns: the sleep connections that ran (0 on a
	// system whose handlers must not block) and their verified answers
	// per second; Requests and the latencies are the echo connections'.
	SleepConns      int     `json:"sleep_conns,omitempty"`
	SleepThroughput float64 `json:"sleep_throughput,omitempty"`
}

// Histogram range: 1 ns to 60 s, three significant figures.
const (
	histMin, histMax, histSig = 1, int64(60 * time.Second), 3
	maxShards                 = 64
)

// shard is a latency histogram shared by a few workers.
type shard struct {
	mu sync.Mutex // guards h
	h  *hdrhistogram.Histogram
}

// failure records the first error of a point; later ones are dropped.
type failure struct {
	once sync.Once
	err  error
	ch   chan struct{} // closed on the first error
}

func newFailure() *failure { return &failure{ch: make(chan struct{})} }

func (f *failure) set(err error) {
	f.once.Do(func() { f.err = err; close(f.ch) })
}

// dialAll opens n connections of protocol p, 32 at a time, and calls use on
// each. On failure it closes those it opened.
func dialAll(ctx context.Context, p Protocol, d dialConfig, n int, use func(i int, c caller) error) ([]caller, error) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	callers := make([]caller, n)
	dial := dialer(p)
	fl := newFailure()
	var next atomic.Int64
	var wg sync.WaitGroup
	for range min(n, 32) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= n || ctx.Err() != nil {
					return
				}
				c, err := dial(ctx, d)
				if err == nil {
					callers[i] = c
					if use != nil {
						err = use(i, c)
					}
				}
				if err != nil {
					fl.set(fmt.Errorf("connection %d of %d: %w", i, n, err))
					cancel()
					return
				}
			}
		}()
	}
	wg.Wait()
	if fl.err != nil {
		closeAll(callers)
		return nil, fl.err
	}
	if err := ctx.Err(); err != nil {
		closeAll(callers)
		return nil, err
	}
	return callers, nil
}

func closeAll(cs []caller) {
	for _, c := range cs {
		if c != nil {
			c.close()
		}
	}
}

// verify checks an answer against its request.
func verify(s System, sc Scenario, conn int, req int64, got, want []byte) error {
	if bytes.Equal(got, want) {
		return nil
	}
	detail := fmt.Sprintf("answer has %d bytes, the request had %d", len(got), len(want))
	if len(got) == len(want) {
		for i := range got {
			if got[i] != want[i] {
				detail = fmt.Sprintf("payload differs at byte %d of %d: got %#02x, want %#02x", i, len(want), got[i], want[i])
				break
			}
		}
	}
	return &WrongAnswerError{System: s.Name, Scenario: sc.Name, Conn: conn, Request: req, Detail: detail}
}

// fillPayload fills b with bytes that depend on conn, so that answers meant
// for another connection would be caught.
func fillPayload(b []byte, conn int) {
	rng := rand.New(rand.NewPCG(uint64(conn)+1, 0x9e3779b97f4a7c15))
	for i := 0; i+8 <= len(b); i += 8 {
		binary.LittleEndian.PutUint64(b[i:], rng.Uint64())
	}
	for i := len(b) &^ 7; i < len(b); i++ {
		b[i] = byte(rng.Uint32())
	}
}

// stamp writes the connection and request number into the payload's first
// bytes, so that a stale or misrouted answer differs from the request.
func stamp(b []byte, conn int, n int64) {
	if len(b) >= 8 {
		binary.LittleEndian.PutUint64(b, uint64(n)<<20|uint64(conn&0xFFFFF))
	}
}

// session is one system's server process and open connections for a load
// scenario, kept for all of the scenario's rounds.
type session struct {
	sys     System
	c       *child
	callers []caller
	seq     []int64 // the last request number used on each connection
	slices  int     // slices run so far
	// sleepers are the connections calling "sleep" (Scenario.SleepConns),
	// with their request numbers.
	sleepers []caller
	sleepSeq []int64
	// procs are the load processes of a paced scenario (which has no
	// callers here), and connect the seconds they took to connect.
	procs   []*loadProc
	connect float64
}

// open starts s's server for sc and opens sc.Conns connections to it.
func (r *runner) open(ctx context.Context, s System, sc Scenario) (*session, error) {
	c, d, err := r.start(ctx, s, sc)
	if err != nil {
		return nil, err
	}
	if sc.Rate > 0 {
		procs, connect, err := r.startLoad(ctx, s, sc, d)
		if err != nil {
			c.stop()
			return nil, err
		}
		return &session{sys: s, c: c, procs: procs, connect: connect}, nil
	}
	callers, err := dialAll(ctx, s.Protocol, d, sc.Conns, nil)
	if err != nil {
		c.stop()
		return nil, err
	}
	ss := &session{sys: s, c: c, callers: callers, seq: make([]int64, len(callers))}
	if sc.SleepConns > 0 && s.Lacks[FeatSlow] == "" {
		if ss.sleepers, err = dialAll(ctx, s.Protocol, d, sc.SleepConns, nil); err != nil {
			ss.close()
			return nil, err
		}
		ss.sleepSeq = make([]int64, sc.SleepConns)
	}
	return ss, nil
}

// close closes the connections and the load processes and stops the
// server, returning the first failure.
func (ss *session) close() error {
	closeAll(ss.callers)
	closeAll(ss.sleepers)
	var err error
	for _, p := range ss.procs {
		if e := p.stop(); err == nil {
			err = e
		}
	}
	if e := ss.c.stop(); err == nil {
		err = e
	}
	return err
}

// The phases of a load: warming up (answers verified, not recorded),
// measuring, stopping.
const (
	warming = iota
	measuring
	stopping
)

// loadConns starts sc's synchronous load on every connection in callers,
// one goroutine each, continuing each connection's request numbers in seq.
// Every answer is verified; answered is called for each one sent and
// answered while phase read measuring. A connection stops at phase
// stopping or at the first failure, which goes to fl and sets phase to
// stopping. Wait on the returned group for all of them.
//
// The connections are numbered from first, for their payloads and errors.
func loadConns(callers []caller, first int, s System, sc Scenario, seq []int64, phase *atomic.Int32, fl *failure, answered func(i int, lat time.Duration)) *sync.WaitGroup {
	var wg sync.WaitGroup
	for j, cl := range callers {
		i := first + j
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(i), 42))
			payload := make([]byte, sc.Payload)
			fillPayload(payload, i)
			for n := seq[j] + 1; ; n++ {
				seq[j] = n
				ph := phase.Load()
				if ph == stopping {
					return
				}
				stamp(payload, i, n)
				req := reqEcho
				if sc.SlowShare > 0 && rng.Float64() < sc.SlowShare {
					req = reqSleep
				}
				t0 := time.Now()
				got, err := cl.call(req, payload)
				lat := time.Since(t0)
				if err != nil {
					fl.set(fmt.Errorf("connection %d, request %d (%s): %w", i, n, req, err))
					phase.Store(stopping)
					return
				}
				if err := verify(s, sc, i, n, got, payload); err != nil {
					fl.set(err)
					phase.Store(stopping)
					return
				}
				if ph == measuring && phase.Load() == measuring {
					answered(j, lat)
				}
			}
		}()
	}
	return &wg
}

// slice runs sc's synchronous load on every connection of ss for a
// warm-up, then measures it for sc.Duration. The warm-up is sc.Warmup on
// the session's first slice and half that later, when the server and the
// connections are warm already and only the load restarts.
func (r *runner) slice(ctx context.Context, ss *session, sc Scenario) (Sample, error) {
	if sc.Rate > 0 {
		return r.pacedSlice(ctx, ss, sc)
	}
	s, c, callers := ss.sys, ss.c, ss.callers
	warmup := sc.Warmup
	if ss.slices > 0 {
		warmup /= 2
	}
	ss.slices++
	deadline := time.Now().Add(warmup + sc.Duration + time.Minute)
	for _, cl := range callers {
		cl.setDeadline(deadline)
	}
	for _, cl := range ss.sleepers {
		cl.setDeadline(deadline)
	}
	shards := make([]*shard, min(len(callers), maxShards))
	for i := range shards {
		shards[i] = &shard{h: hdrhistogram.New(histMin, histMax, histSig)}
	}
	var phase atomic.Int32
	fl := newFailure()
	wg := loadConns(callers, 0, s, sc, ss.seq, &phase, fl, func(i int, lat time.Duration) {
		sh := shards[i%len(shards)]
		sh.mu.Lock()
		sh.h.RecordValue(int64(lat))
		sh.mu.Unlock()
	})
	// The sleep connections share the phase: every request to "sleep".
	var slept atomic.Int64
	sleepSc := sc
	sleepSc.SlowShare = 1
	swg := loadConns(ss.sleepers, len(callers), s, sleepSc, ss.sleepSeq, &phase, fl, func(int, time.Duration) { slept.Add(1) })
	finish := func(err error) (Sample, error) {
		phase.Store(stopping)
		wg.Wait()
		swg.Wait()
		if fl.err != nil {
			return Sample{}, fl.err
		}
		return Sample{}, err
	}
	// wait sleeps for d, the length of a phase, unless the point fails.
	wait := func(d time.Duration) error {
		t := time.NewTimer(d)
		defer t.Stop()
		select {
		case <-t.C:
			return nil
		case <-fl.ch:
			return fl.err
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	if err := wait(warmup); err != nil {
		return finish(err)
	}
	before, err := c.stats(ctx, false)
	if err != nil {
		return finish(err)
	}
	m0 := readCPUTimes()
	t0 := time.Now()
	phase.Store(measuring)
	if err := wait(sc.Duration); err != nil {
		return finish(err)
	}
	phase.Store(stopping)
	t1 := time.Now()
	m1 := readCPUTimes()
	after, err := c.stats(ctx, false)
	if err != nil {
		return finish(err)
	}
	wg.Wait()
	swg.Wait()
	if fl.err != nil {
		return Sample{}, fl.err
	}
	// The connections wait, idle, while the other systems' slices run;
	// a client with a reader of its own (net/rpc's) would otherwise time
	// out meanwhile and shut down for good.
	for _, cl := range callers {
		cl.setDeadline(time.Time{})
	}
	for _, cl := range ss.sleepers {
		cl.setDeadline(time.Time{})
	}
	h := hdrhistogram.New(histMin, histMax, histSig)
	for _, sh := range shards {
		h.Merge(sh.h)
	}
	n := h.TotalCount()
	if n == 0 {
		return Sample{}, fmt.Errorf("no request completed in %v", sc.Duration)
	}
	secs := t1.Sub(t0).Seconds()
	other, steal := others(m0, m1, after.CPUSeconds-before.CPUSeconds, secs)
	return Sample{
		OtherCPUs:       other,
		StealCPUs:       steal,
		Requests:        n,
		Seconds:         secs,
		Throughput:      float64(n) / secs,
		P50us:           float64(h.ValueAtQuantile(50)) / 1e3,
		P99us:           float64(h.ValueAtQuantile(99)) / 1e3,
		P999us:          float64(h.ValueAtQuantile(99.9)) / 1e3,
		CPUusPerReq:     (after.CPUSeconds - before.CPUSeconds) / float64(n) * 1e6,
		AllocsPerReq:    float64(after.Mallocs-before.Mallocs) / float64(n),
		SysUsPerReq:     (after.SysSeconds - before.SysSeconds) / float64(n) * 1e6,
		CtxSwPerReq:     float64(after.CtxSwitches-before.CtxSwitches) / float64(n),
		RSSBytes:        after.RSSBytes,
		Goroutines:      after.Goroutines,
		MaxUs:           float64(h.Max()) / 1e3,
		SleepConns:      len(ss.sleepers),
		SleepThroughput: float64(slept.Load()) / secs,
	}, nil
}

// idle opens sc.Conns connections, uses each once (PROTOCHECK for Petrel
// systems, then one verified echo on every system) and measures what the
// server holds for them.
func (r *runner) idle(ctx context.Context, c *child, s System, sc Scenario, d dialConfig) (Sample, error) {
	before, err := c.stats(ctx, true)
	if err != nil {
		return Sample{}, err
	}
	t := time.Now()
	callers, err := dialAll(ctx, s.Protocol, d, sc.Conns, func(i int, cl caller) error {
		cl.setDeadline(time.Now().Add(time.Minute))
		p := make([]byte, sc.Payload)
		fillPayload(p, i)
		stamp(p, i, 1)
		got, err := cl.call(reqEcho, p)
		if err != nil {
			return err
		}
		return verify(s, sc, i, 1, got, p)
	})
	if err != nil {
		return Sample{}, err
	}
	defer closeAll(callers)
	connect := time.Since(t)
	after, err := c.stats(ctx, true)
	if err != nil {
		return Sample{}, err
	}
	n := float64(len(callers))
	return Sample{
		Conns:             len(callers),
		RSSBytes:          after.RSSBytes,
		Goroutines:        after.Goroutines,
		RSSPerConn:        float64(after.RSSBytes-before.RSSBytes) / n,
		HeapPerConn:       (float64(after.HeapInuse) - float64(before.HeapInuse)) / n,
		GoroutinesPerConn: float64(after.Goroutines-before.Goroutines) / n,
		ConnectSeconds:    connect.Seconds(),
	}, nil
}
