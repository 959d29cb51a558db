package bench

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/iotest"
	"time"

	"go.uber.org/goleak"

	"github.com/petrel-rpc/petrel/codec"
	"github.com/petrel-rpc/petrel/engine"
)

// childEnv marks a test binary started as the server role.
const childEnv = "PETREL_BENCH_TEST_CHILD"

func TestMain(m *testing.M) {
	if os.Getenv(childEnv) == "1" {
		// The server role: this test binary serves the test systems; or
		// the load role of paced scenarios.
		role := func() error { return ServeMain(os.Args[1:], testSystems(), os.Stdin, os.Stdout) }
		if slices.Contains(os.Args[1:], "-load") {
			role = func() error { return LoadMain(os.Args[1:], os.Stdin, os.Stdout) }
		}
		if err := role(); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	goleak.VerifyTestMain(m,
		// gnet's pkg/pool/goroutine starts a global ants pool in init().
		goleak.IgnoreTopFunction("github.com/panjf2000/ants/v2.(*poolCommon).purgeStaleWorkers"),
		goleak.IgnoreTopFunction("github.com/panjf2000/ants/v2.(*poolCommon).ticktock"))
}

// testSystems is the real systems plus the broken test doubles.
func testSystems() []System {
	return append(Systems(),
		System{
			Name:     "broken-payload",
			Doc:      "test double: flips a payload bit in the 50th answer on each connection",
			Protocol: ProtoPetrel,
			Serve:    serveBroken(func(n int, f *codec.Frame) { corruptAt(n, 50, f) }),
		},
		System{
			Name:     "broken-first",
			Doc:      "test double: flips a payload bit in every connection's first echo",
			Protocol: ProtoPetrel,
			Serve:    serveBroken(func(n int, f *codec.Frame) { corruptAt(n, 1, f) }),
		},
		System{
			Name:     "fake-v1",
			Doc:      "test double: a goroutine-per-connection server speaking protocol version 1 only",
			Protocol: ProtoPetrel,
			Serve:    serveFakeV1(false),
		},
		System{
			Name:     "v0-only",
			Doc:      "test double: the stdlib floor (version 0 only) without saying so",
			Protocol: ProtoPetrel,
			Serve:    serveFloorStd,
		},
	)
}

func corruptAt(n, at int, f *codec.Frame) {
	if n == at && len(f.Payload) > 0 {
		f.Payload[len(f.Payload)-1] ^= 0x10
	}
}

// testCommand starts this test binary in the server role.
func testCommand(t testing.TB) func(args []string) *exec.Cmd {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	return func(args []string) *exec.Cmd {
		cmd := exec.Command(exe, args...)
		// A race-enabled child would otherwise sleep 1 s at exit.
		cmd.Env = append(os.Environ(), childEnv+"=1", "GORACE=atexit_sleep_ms=0")
		return cmd
	}
}

func pick(t testing.TB, names ...string) []System {
	t.Helper()
	s, err := SelectSystems(testSystems(), strings.Join(names, ","))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func tiny(name string, conns, payload int) Scenario {
	return Scenario{Name: name, Conns: conns, Payload: payload, Warmup: 20 * time.Millisecond, Duration: 120 * time.Millisecond, Repeats: 1}
}

// TestSuiteEndToEnd runs a tiny suite on every kind of system and scenario
// and checks the report, the table, the JSON, the charts and -compare.
func TestSuiteEndToEnd(t *testing.T) {
	names := []string{"floor-std", "floor-gnet", "net-rpc", "grpc"}
	for _, s := range engineSystems() {
		if s.Unavailable == "" {
			names = append(names, s.Name)
		}
	}
	ladder := tiny("c4-64B", 4, 64)
	ladder.ConnLadder, ladder.Repeats = true, 2
	one := tiny("c1-64B", 1, 64)
	one.ConnLadder = true
	unix := tiny("unix-c2", 2, 64)
	unix.Unix = true
	hm := tiny("hmac-c2", 2, 64)
	hm.HMAC = true
	tl := tiny("tls-c2", 2, 64)
	tl.TLS = true
	mix := tiny("slowmix-c4", 4, 64)
	mix.SlowShare, mix.Slow = 0.2, time.Millisecond
	idle := Scenario{Name: "idle-100", Conns: 100, Payload: 64, Idle: true, Repeats: 1}
	// Large enough for frames split over many reads and vectored writes;
	// small enough for race-instrumented servers (50 ms of CPU per MiB).
	big := tiny("c2-256KiB", 2, 256<<10)
	big.Duration = 400 * time.Millisecond
	scs := []Scenario{one, ladder, big, unix, hm, tl, mix, idle}

	rep, err := Run(context.Background(), Options{Systems: pick(t, names...), Scenarios: scs, Command: testCommand(t)})
	if err != nil {
		t.Fatal(err)
	}
	for _, sr := range rep.Scenarios {
		for _, res := range sr.Results {
			s := pick(t, res.System)[0]
			if why := s.why(sr.Scenario); why != "" {
				if res.Skipped == "" || res.Samples != nil {
					t.Errorf("%s/%s: ran, want skipped (%s)", sr.Scenario.Name, res.System, why)
				}
				continue
			}
			if len(res.Samples) != sr.Scenario.Repeats {
				t.Errorf("%s/%s: %d samples, want %d", sr.Scenario.Name, res.System, len(res.Samples), sr.Scenario.Repeats)
				continue
			}
			for _, smp := range res.Samples {
				if sr.Scenario.Idle {
					if smp.Conns != 100 || smp.RSSBytes <= 0 {
						t.Errorf("%s/%s: idle sample %+v", sr.Scenario.Name, res.System, smp)
					}
				} else if smp.Requests <= 0 || smp.Throughput <= 0 || smp.P50us <= 0 || smp.P999us < smp.P50us || smp.CPUusPerReq <= 0 {
					t.Errorf("%s/%s: sample %+v", sr.Scenario.Name, res.System, smp)
				}
			}
		}
	}
	if rep.Baseline == "" {
		t.Fatal("no baseline chosen")
	}

	var table bytes.Buffer
	rep.WriteTable(&table)
	for _, want := range []string{"c4-64B", "idle-100", "floor-gnet", "grpc", "RSS B/conn", "×" + rep.Baseline, "skipped: floor-gnet (no tls"} {
		if !strings.Contains(table.String(), want) {
			t.Errorf("table lacks %q:\n%s", want, table.String())
		}
	}

	dir := t.TempDir()
	path := filepath.Join(dir, "results.json")
	if err := rep.WriteJSON(path); err != nil {
		t.Fatal(err)
	}
	back, err := LoadReport(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(back.Scenarios) != len(scs) || back.Machine.GoVersion == "" || back.Machine.LogicalCores == 0 {
		t.Errorf("JSON round trip lost data: %d scenarios, machine %+v", len(back.Scenarios), back.Machine)
	}
	files, err := rep.WriteCharts(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"throughput-vs-conns.svg", "latency-c4-64B.png", "memory-per-conn.svg"} {
		found := false
		for _, f := range files {
			if filepath.Base(f) == want {
				fi, err := os.Stat(f)
				found = err == nil && fi.Size() > 1000
			}
		}
		if !found {
			t.Errorf("chart %s missing or empty among %v", want, files)
		}
	}
	// Ratios come from the rounds, paired with the baseline.
	for _, sr := range rep.Scenarios {
		if sr.Scenario.Name != ladder.Name {
			continue
		}
		for _, res := range sr.Results {
			st := res.Figures["throughput"]
			if res.System == rep.Baseline || st == nil {
				continue
			}
			if st.Ratio <= 0 || st.RatioMin > st.Ratio || st.RatioMax < st.Ratio {
				t.Errorf("%s/%s: ratio %v not within its range %v–%v", sr.Scenario.Name, res.System, st.Ratio, st.RatioMin, st.RatioMax)
			}
		}
	}
	var cmp bytes.Buffer
	ag := Compare(&cmp, back, rep)
	if !strings.Contains(cmp.String(), "c4-64B") || !strings.Contains(cmp.String(), "+0%") {
		t.Errorf("comparing a report with itself:\n%s", cmp.String())
	}
	if ag.Ratios == 0 || ag.RatiosAgree != ag.Ratios || ag.FiguresAgree != ag.Figures || len(ag.Differ) != 0 {
		t.Errorf("a report disagrees with itself: %+v\n%s", ag, cmp.String())
	}
}

// TestCompareAgreement: runs agree on a figure when their min–max ranges
// over the rounds overlap, for absolute figures and ratios alike, and each
// disagreeing ratio is named.
func TestCompareAgreement(t *testing.T) {
	mk := func(base, sys []float64) *Report {
		sc := Scenario{Name: "c1", Conns: 1, Payload: 8, Repeats: len(base)}
		sr := &ScenarioResult{Scenario: sc}
		for _, x := range []struct {
			name string
			v    []float64
		}{{"std", base}, {"reactor-pool", sys}} {
			res := &Result{System: x.name}
			for i, v := range x.v {
				res.Samples = append(res.Samples, Sample{Repeat: i, Throughput: v, P50us: 1e6 / v, P99us: 2e6 / v, CPUusPerReq: 1})
			}
			sr.Results = append(sr.Results, res)
		}
		r := &Report{Baseline: "std", Scenarios: []*ScenarioResult{sr}}
		r.summarize()
		return r
	}
	// The machine got 30% slower between the runs, for both systems alike.
	old := mk([]float64{100, 104, 98}, []float64{120, 122, 119})
	cur := mk([]float64{70, 72, 69}, []float64{84, 86, 83})
	var out bytes.Buffer
	ag := Compare(&out, old, cur)
	if ag.Ratios != 4 || ag.RatiosAgree != 4 {
		t.Errorf("drift shared by every system: %d of %d ratios agree, want 4 of 4\n%s", ag.RatiosAgree, ag.Ratios, out.String())
	}
	if ag.Figures != 8 || ag.FiguresAgree != 2 { // only CPU µs/req did not move
		t.Errorf("absolute figures: %d of %d agree, want 2 of 8\n%s", ag.FiguresAgree, ag.Figures, out.String())
	}
	if want := 4 * 2.0 / 20; math.Abs(ag.ByChance-want) > 1e-9 { // 3 rounds each: 2/C(6,3)
		t.Errorf("ByChance = %v, want %v", ag.ByChance, want)
	}
	if p := apartByChance(5, 5); math.Abs(p-2.0/252) > 1e-12 {
		t.Errorf("apartByChance(5, 5) = %v, want 2/252", p)
	}
	// Now reactor-pool alone got slower.
	cur = mk([]float64{100, 104, 98}, []float64{90, 95, 92})
	out.Reset()
	ag = Compare(&out, old, cur)
	if ag.RatiosAgree != 1 || len(ag.Differ) != 3 || !strings.Contains(ag.Differ[0], "c1/reactor-pool req/s") {
		t.Errorf("a real change: %+v\n%s", ag, out.String())
	}
	if !strings.Contains(out.String(), "≠") {
		t.Errorf("no ≠ mark:\n%s", out.String())
	}
}

// TestBrokenSystemFailsTheRun proves that a wrong answer stops the run
// with an error naming the system and the scenario, in load and idle
// scenarios alike.
func TestBrokenSystemFailsTheRun(t *testing.T) {
	cases := []struct {
		system string
		sc     Scenario
	}{
		{"broken-payload", tiny("c2-64B", 2, 64)},
		{"broken-payload", tiny("c1-16KiB", 1, 16<<10)},
		{"broken-first", Scenario{Name: "idle-10", Conns: 10, Payload: 64, Idle: true, Repeats: 1}},
	}
	for _, c := range cases {
		t.Run(c.system+"/"+c.sc.Name, func(t *testing.T) {
			rep, err := Run(context.Background(), Options{
				Systems:   pick(t, "floor-std", c.system),
				Scenarios: []Scenario{c.sc},
				Command:   testCommand(t),
			})
			if err == nil {
				t.Fatalf("run succeeded with a broken system: %+v", rep)
			}
			var wa *WrongAnswerError
			if !errors.As(err, &wa) {
				t.Fatalf("error %v is not a *WrongAnswerError", err)
			}
			if wa.System != c.system || wa.Scenario != c.sc.Name {
				t.Errorf("error names %s/%s, want %s/%s", wa.System, wa.Scenario, c.system, c.sc.Name)
			}
			msg := err.Error()
			for _, want := range []string{"WRONG ANSWER", c.system, c.sc.Name, "payload differs at byte"} {
				if !strings.Contains(msg, want) {
					t.Errorf("message %q lacks %q", msg, want)
				}
			}
		})
	}
}

// TestUnknownSystemInServerRole: a server role that cannot start fails the
// run with an error naming the system and the server's reason.
func TestUnknownSystemInServerRole(t *testing.T) {
	_, err := Run(context.Background(), Options{
		Systems:   []System{{Name: "no-such-system", Protocol: ProtoPetrel}},
		Scenarios: []Scenario{tiny("c1", 1, 8)},
		Command:   testCommand(t),
	})
	var pe *PointError
	if !errors.As(err, &pe) || pe.System != "no-such-system" || !strings.Contains(err.Error(), "unknown system") {
		t.Fatalf("got %v, want a PointError naming the system and saying why", err)
	}
}

// TestFrameReader checks the load client's reader against frames that
// arrive a byte at a time and several to a read.
func TestFrameReader(t *testing.T) {
	var stream []byte
	var want [][]byte
	for i := range 5 {
		p := bytes.Repeat([]byte{byte(i)}, i*3000)
		want = append(want, p)
		stream, _ = codec.AppendFrame(stream, codec.Frame{Seq: uint32(i), Request: []byte("echo"), Payload: p}, nil)
	}
	for _, mode := range []string{"all", "onebyte"} {
		var src io.Reader = bytes.NewReader(stream)
		if mode == "onebyte" {
			src = iotest.OneByteReader(src)
		}
		var fr frameReader
		for i, w := range want {
			f, err := fr.next(src, codec.Options{})
			if err != nil {
				t.Fatalf("%s frame %d: %v", mode, i, err)
			}
			if f.Seq != uint32(i) || !bytes.Equal(f.Payload, w) {
				t.Fatalf("%s frame %d: seq %d, %d payload bytes", mode, i, f.Seq, len(f.Payload))
			}
		}
		if _, err := fr.next(src, codec.Options{}); err != io.EOF {
			t.Fatalf("%s: after the last frame got %v, want EOF", mode, err)
		}
	}
}

// serveBroken is a goroutine-per-connection Petrel server that answers
// PROTOCHECK correctly and passes the n-th echo answer on each connection
// (counting from 1) through corrupt before writing it.
func serveBroken(corrupt func(n int, f *codec.Frame)) func(context.Context, ServeConfig) (Server, error) {
	return func(_ context.Context, c ServeConfig) (Server, error) {
		ln, err := listen(c.Addr, c.TLS)
		if err != nil {
			return nil, err
		}
		b := &brokenServer{ln: ln}
		b.wg.Add(1)
		go func() {
			defer b.wg.Done()
			for {
				conn, err := ln.Accept()
				if err != nil {
					return
				}
				b.wg.Add(1)
				go func() {
					defer b.wg.Done()
					defer conn.Close()
					var fr frameReader
					var out []byte
					for n := 0; ; {
						f, err := fr.next(conn, codec.Options{})
						if err != nil {
							return
						}
						a := codec.Frame{Status: codec.StatusOK, Seq: f.Seq, Request: f.Request, Payload: f.Payload}
						if string(f.Request) == codec.ProtoCheck {
							a.Payload = protoVersion
						} else {
							n++
							corrupt(n, &a)
						}
						if writeFrame(conn, &out, a, nil) != nil {
							return
						}
					}
				}()
			}
		}()
		return b, nil
	}
}

type brokenServer struct {
	ln net.Listener
	wg sync.WaitGroup
}

func (b *brokenServer) Addr() string { return lnAddr(b.ln) }
func (b *brokenServer) Close() error { return b.ln.Close() }

// TestDrive: Drive loads a running server, counts verified answers, and
// stops at the first wrong one.
func TestDrive(t *testing.T) {
	ctx := context.Background()
	good, err := serveFloorStd(ctx, ServeConfig{Addr: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	defer good.Close()
	n, err := Drive(ctx, good.Addr(), 3, 100, 100*time.Millisecond)
	if err != nil || n == 0 {
		t.Fatalf("Drive = %d, %v; want some answers", n, err)
	}
	bad, err := serveBroken(func(n int, f *codec.Frame) { corruptAt(n, 5, f) })(ctx, ServeConfig{Addr: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	defer bad.Close()
	_, err = Drive(ctx, bad.Addr(), 1, 100, time.Minute)
	var wa *WrongAnswerError
	if !errors.As(err, &wa) || wa.Request != 5 {
		t.Fatalf("Drive against a broken server: %v, want a wrong answer at request 5", err)
	}
}

// TestRoundsBeyondFileLimit: when the open-file limit cannot hold every
// system's connections at once, each slice opens its own server and
// connections; the run still completes, paired, and says so.
func TestRoundsBeyondFileLimit(t *testing.T) {
	sc := tiny("c8-64B", 8, 64)
	sc.Repeats = 2
	rep, err := Run(context.Background(), Options{
		Systems:   pick(t, "floor-std", "std"),
		Scenarios: []Scenario{sc},
		Command:   testCommand(t),
		fileLimit: func() uint64 { return fileMargin + 10 },
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, res := range rep.Scenarios[0].Results {
		if len(res.Samples) != 2 {
			t.Errorf("%s: %d samples, want 2", res.System, len(res.Samples))
		}
	}
	if !strings.Contains(strings.Join(rep.Notes, "\n"), "each slice started its own server") {
		t.Errorf("no note about the open-file limit: %q", rep.Notes)
	}
}

// TestLoadFormat1: a report written before ratios had ranges gets them
// from its samples when loaded; runs on different baselines are not
// compared on ratios.
func TestLoadFormat1(t *testing.T) {
	sc := Scenario{Name: "c1", Conns: 1, Payload: 8, Repeats: 2}
	sr := &ScenarioResult{Scenario: sc}
	for _, x := range []struct {
		name string
		v    []float64
	}{{"std", []float64{100, 110}}, {"reactor-pool", []float64{120, 99}}} {
		res := &Result{System: x.name}
		for i, v := range x.v {
			res.Samples = append(res.Samples, Sample{Repeat: i, Throughput: v, P50us: 1, P99us: 1, CPUusPerReq: 1})
		}
		sr.Results = append(sr.Results, res)
	}
	r := &Report{Format: 1, Baseline: "std", Scenarios: []*ScenarioResult{sr}}
	r.summarize()
	for _, st := range sr.Results[1].Figures { // as format 1 wrote them
		st.RatioMin, st.RatioMax, st.RatioSpreadPct = 0, 0, 0
	}
	path := filepath.Join(t.TempDir(), "old.json")
	if err := r.WriteJSON(path); err != nil {
		t.Fatal(err)
	}
	back, err := LoadReport(path)
	if err != nil {
		t.Fatal(err)
	}
	st := back.Scenarios[0].Results[1].Figures["throughput"]
	if math.Abs(st.RatioMin-0.9) > 1e-9 || math.Abs(st.RatioMax-1.2) > 1e-9 {
		t.Errorf("ratio range %v–%v, want 0.9–1.2", st.RatioMin, st.RatioMax)
	}
	other := *back
	other.Baseline = "floor-std"
	var out bytes.Buffer
	if ag := Compare(&out, back, &other); ag.Ratios != 0 || !strings.Contains(out.String(), "different baselines") {
		t.Errorf("compared ratios across baselines: %+v\n%s", ag, out.String())
	}
}

// TestChartsOneConnectionCount: a run of a single connection-ladder
// scenario still draws its charts (a log axis over one value used to make
// the plotting library panic after the measurements were done).
func TestChartsOneConnectionCount(t *testing.T) {
	sc := Scenario{Name: "c1-64B", Conns: 1, Payload: 64, Repeats: 2, ConnLadder: true}
	sr := &ScenarioResult{Scenario: sc}
	for _, name := range []string{"std", "reactor-pool"} {
		res := &Result{System: name}
		for i, v := range []float64{100, 120} {
			res.Samples = append(res.Samples, Sample{Repeat: i, Throughput: v, P50us: 10, P99us: 20, P999us: 30, CPUusPerReq: 1})
		}
		sr.Results = append(sr.Results, res)
	}
	r := &Report{Format: 2, Baseline: "std", Scenarios: []*ScenarioResult{sr}}
	r.summarize()
	files, err := r.WriteCharts(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if len(files) != 4 { // throughput and latency, SVG and PNG
		t.Errorf("charts %v, want 4 files", files)
	}
}

// serveFakeV1 is a small goroutine-per-connection server that speaks only
// protocol version 1 as docs/PROTOCOL.md defines it: a version-0
// PROTOCHECK is answered 497 0x01; the version-1 one (under the version-0
// MAC when keyed) is answered 200 0x01 ‖ server nonce; after it, every
// request must carry the session key's tag in direction 'C' and a seq one
// more than the previous one, or it is answered 502 (498 unkeyed) and the
// connection closed. Answers are tagged in direction 'S' (or, with
// wrongDir, 'C': an answer the client must refuse).
func serveFakeV1(wrongDir bool) func(context.Context, ServeConfig) (Server, error) {
	return func(_ context.Context, c ServeConfig) (Server, error) {
		ln, err := listen(c.Addr, c.TLS)
		if err != nil {
			return nil, err
		}
		dir := codec.ServerToClient
		if wrongDir {
			dir = codec.ClientToServer
		}
		return startConnServer(ln, func(conn net.Conn) { fakeV1Conn(conn, c.HMACKey, dir) }), nil
	}
}

func fakeV1Conn(conn net.Conn, key []byte, dir codec.Direction) {
	var fr frameReader
	var out []byte
	opts := codec.Options{MAC: key != nil}
	var mac0 *codec.MAC
	if key != nil {
		mac0 = codec.NewMAC(key)
	}
	f, err := fr.next(conn, opts)
	if err != nil || string(f.Request) != codec.ProtoCheck {
		return
	}
	if mac0 != nil && mac0.Verify(f.Payload, f.MAC) != nil {
		return
	}
	v, clientNonce, err := codec.ParseProtoCheck(f.Payload)
	if err != nil || v != codec.ProtocolV1 {
		out, _ = codec.AppendFrame(out[:0], codec.Frame{Status: codec.StatusVersionMismatch, Seq: f.Seq, Request: f.Request, Payload: []byte{codec.ProtocolV1}}, mac0)
		conn.Write(out)
		return
	}
	clientNonce = append([]byte(nil), clientNonce...)
	var serverNonce [codec.NonceLen]byte
	rand.Read(serverNonce[:])
	seq := f.Seq
	out, _ = codec.AppendFrame(out[:0], codec.Frame{Status: codec.StatusOK, Seq: seq, Request: f.Request, Payload: codec.AppendProtoCheck(nil, codec.ProtocolV1, serverNonce[:])}, mac0)
	if _, err := conn.Write(out); err != nil {
		return
	}
	var fm *codec.FrameMAC
	if key != nil {
		k := codec.SessionKey(key, clientNonce, serverNonce[:])
		fm = codec.NewFrameMAC(k[:])
	}
	opts.Version = codec.ProtocolV1
	for {
		f, err := fr.next(conn, opts)
		if err != nil {
			return
		}
		a := codec.Frame{Status: codec.StatusOK, Seq: f.Seq, Request: f.Request, Payload: f.Payload}
		refuse := false
		switch {
		case fm != nil && fm.Verify(codec.ClientToServer, f) != nil:
			a.Status, a.Payload, refuse = codec.StatusBadMAC, nil, true
		case f.Seq != seq+1:
			a.Status, a.Payload, refuse = codec.StatusReadError, nil, true
			if fm != nil {
				a.Status = codec.StatusBadMAC
			}
		case string(f.Request) != reqEcho && string(f.Request) != reqSleep:
			a.Status, a.Payload = codec.StatusNoHandler, nil
		}
		seq = f.Seq
		out, _ = codec.AppendFrameV1(out[:0], a, fm, dir)
		if _, err := conn.Write(out); err != nil || refuse {
			return
		}
	}
}

func startTestServer(t testing.TB, serve func(context.Context, ServeConfig) (Server, error), key []byte) Server {
	t.Helper()
	s, err := serve(context.Background(), ServeConfig{Addr: "127.0.0.1:0", HMACKey: key})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// TestV1Client: the load client negotiates version 1 with and without a
// key, signs and verifies whole frames under the session key and keeps seq
// strictly one more per request; it refuses an answer tagged for the wrong
// direction, and a version-0 server makes it fail at once with ErrNoV1.
func TestV1Client(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	key := []byte("test-key")
	for _, k := range [][]byte{nil, key} {
		t.Run(fmt.Sprintf("keyed=%v", k != nil), func(t *testing.T) {
			s := startTestServer(t, serveFakeV1(false), k)
			cl, err := dialPetrel(ctx, dialConfig{addr: s.Addr(), hmac: k, version: 1})
			if err != nil {
				t.Fatal(err)
			}
			defer cl.close()
			cl.setDeadline(time.Now().Add(20 * time.Second))
			for i, size := range []int{0, 64, 100 << 10} { // 100 KiB: the vectored write
				p := make([]byte, size)
				fillPayload(p, i)
				got, err := cl.call(reqEcho, p)
				if err != nil {
					t.Fatalf("call %d: %v", i, err)
				}
				if err := verify(System{Name: "fake-v1"}, Scenario{Name: "v1"}, 0, int64(i), got, p); err != nil {
					t.Fatal(err)
				}
			}
		})
	}
	t.Run("wrong-direction", func(t *testing.T) {
		s := startTestServer(t, serveFakeV1(true), key)
		_, err := dialPetrel(ctx, dialConfig{addr: s.Addr(), hmac: key, version: 1})
		if !errors.Is(err, codec.ErrBadMAC) {
			t.Fatalf("answer tagged 'C' accepted: %v", err)
		}
	})
	for _, k := range [][]byte{nil, key} {
		t.Run(fmt.Sprintf("v0-server/keyed=%v", k != nil), func(t *testing.T) {
			s := startTestServer(t, serveFloorStd, k)
			_, err := dialPetrel(ctx, dialConfig{addr: s.Addr(), hmac: k, version: 1})
			if !errors.Is(err, ErrNoV1) || !strings.Contains(err.Error(), "server does not speak protocol version 1") {
				t.Fatalf("version 1 against a version-0 server: %v, want ErrNoV1", err)
			}
		})
	}
	// A version-1 server sees the version-0 client as before.
	s := startTestServer(t, serveFakeV1(false), nil)
	if _, err := dialPetrel(ctx, dialConfig{addr: s.Addr()}); err == nil || !strings.Contains(err.Error(), "497") {
		t.Fatalf("version 0 against a version-1-only server: %v, want 497", err)
	}
}

// TestV1ClientEngine runs the version-1 client against the engine in this
// checkout: until the engine speaks version 1 the client must fail at once
// with ErrNoV1; once it does, keyed and unkeyed sessions must work.
func TestV1ClientEngine(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, kind := range []engine.Kind{engine.Std, engine.Reactor} {
		for _, k := range [][]byte{nil, []byte("test-key")} {
			t.Run(fmt.Sprintf("%s/keyed=%v", kind, k != nil), func(t *testing.T) {
				s := startTestServer(t, serveEngine(kind, false), k)
				cl, err := dialPetrel(ctx, dialConfig{addr: s.Addr(), hmac: k, version: 1})
				if errors.Is(err, ErrNoV1) {
					t.Skipf("the engine does not speak version 1 yet: %v", err)
				}
				if err != nil {
					t.Fatal(err)
				}
				defer cl.close()
				cl.setDeadline(time.Now().Add(20 * time.Second))
				for i := range 3 {
					p := []byte(fmt.Sprint("payload ", i))
					got, err := cl.call(reqEcho, p)
					if err != nil || string(got) != string(p) {
						t.Fatalf("call %d: %q, %v", i, got, err)
					}
				}
			})
		}
	}
}

// TestV1Scenario: a version-1 HMAC scenario runs end to end on a
// version-1 server, is skipped on systems that lack version 1, and fails
// the run with a clear error, not a hang, on one that only claims it.
func TestV1Scenario(t *testing.T) {
	sc := tiny("hmac-v1-c2", 2, 64)
	sc.HMAC, sc.Version = true, 1
	rep, err := Run(context.Background(), Options{Systems: pick(t, "fake-v1", "floor-std"), Scenarios: []Scenario{sc}, Command: testCommand(t)})
	if err != nil {
		t.Fatal(err)
	}
	for _, res := range rep.Scenarios[0].Results {
		switch res.System {
		case "fake-v1":
			if len(res.Samples) != 1 || res.Samples[0].Requests == 0 {
				t.Errorf("fake-v1: %+v", res.Samples)
			}
		case "floor-std":
			if !strings.Contains(res.Skipped, "protocol version 1") {
				t.Errorf("floor-std not skipped: %q", res.Skipped)
			}
		}
	}
	_, err = Run(context.Background(), Options{Systems: pick(t, "v0-only"), Scenarios: []Scenario{sc}, Command: testCommand(t)})
	var pe *PointError
	if !errors.As(err, &pe) || !errors.Is(err, ErrNoV1) || pe.System != "v0-only" {
		t.Fatalf("version 1 on a version-0 server: %v, want a PointError wrapping ErrNoV1", err)
	}
}

// TestSendAtSpreadsEvenly: the paced schedule spreads 200 connections'
// sends evenly over each period, one period apart on each connection.
func TestSendAtSpreadsEvenly(t *testing.T) {
	const n, bins = 200, 10
	t0 := time.Unix(1000, 0)
	period := time.Second
	var count [bins]int
	for g := range n {
		for k := range int64(3) {
			at := sendAt(t0, g, n, period, k)
			if d := at.Sub(sendAt(t0, g, n, period, 0)); d != time.Duration(k)*period {
				t.Fatalf("connection %d, request %d: %v after its first, want %v", g, k, d, time.Duration(k)*period)
			}
			off := at.Sub(t0) - time.Duration(k)*period
			if off < 0 || off >= period {
				t.Fatalf("connection %d: offset %v outside the period", g, off)
			}
			if k == 0 {
				count[off*bins/period]++
			}
		}
	}
	for i, c := range count {
		if c != n/bins {
			t.Errorf("bin %d of %d holds %d first sends, want %d (counts %v)", i, bins, c, n/bins, count)
		}
	}
}

// TestPacedScenario runs a paced scenario at a small scale (200
// connections at 10 requests per second, in two load processes of 100
// each): every request of the measured window is sent and verified, the
// figures are filled in, and a wrong answer still fails the run.
func TestPacedScenario(t *testing.T) {
	sc := Scenario{Name: "c200-10rps", Conns: 200, Payload: 64, Rate: 10, Warmup: 200 * time.Millisecond, Duration: time.Second, Repeats: 2}
	rep, err := Run(context.Background(), Options{Systems: pick(t, "floor-std", "std"), Scenarios: []Scenario{sc}, Command: testCommand(t), loadPerProc: 100})
	if err != nil {
		t.Fatal(err)
	}
	for _, res := range rep.Scenarios[0].Results {
		if len(res.Samples) != 2 {
			t.Fatalf("%s: %d samples, want 2", res.System, len(res.Samples))
		}
		for _, s := range res.Samples {
			// Each connection sends Rate·Duration requests in the window.
			if want := int64(200 * 10); s.Sent != want || s.Requests != want || s.Failures != 0 {
				t.Errorf("%s: sent %d, verified %d, failures %d (%s); want %d, %d, 0", res.System, s.Sent, s.Requests, s.Failures, s.FirstFailure, want, want)
			}
			if s.P50us <= 0 || s.MaxUs < s.P99us || s.RSSBytes <= 0 || s.Goroutines <= 0 || s.ConnectSeconds <= 0 {
				t.Errorf("%s: sample %+v", res.System, s)
			}
		}
	}
	var table bytes.Buffer
	rep.WriteTable(&table)
	for _, want := range []string{"verified", "failures", "max µs", "scheduled send time"} {
		if !strings.Contains(table.String(), want) {
			t.Errorf("table lacks %q:\n%s", want, table.String())
		}
	}
	sc.Repeats = 1
	_, err = Run(context.Background(), Options{Systems: pick(t, "broken-first"), Scenarios: []Scenario{sc}, Command: testCommand(t), loadPerProc: 100})
	var wa *WrongAnswerError
	if !errors.As(err, &wa) || wa.System != "broken-first" {
		t.Fatalf("paced load on a broken server: %v, want a wrong answer", err)
	}
}

// TestDialSourceAddresses: connections spread over the configured
// loopback source addresses.
func TestDialSourceAddresses(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	d := dialConfig{addr: ln.Addr().String(), local: []net.IP{net.ParseIP("127.0.0.2"), net.ParseIP("127.0.0.3")}, next: &atomicCounter{}}
	seen := map[string]int{}
	for range 4 {
		c, err := d.dial(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		s, err := ln.Accept()
		if err != nil {
			t.Fatal(err)
		}
		seen[s.RemoteAddr().(*net.TCPAddr).IP.String()]++
		s.Close()
		c.Close()
	}
	if seen["127.0.0.2"] != 2 || seen["127.0.0.3"] != 2 {
		t.Errorf("source addresses used: %v, want two each of 127.0.0.2 and 127.0.0.3", seen)
	}
}

// TestMixedScenario: echo latency at one connection beside connections
// calling "sleep" back to back: the sleep connections run where handlers
// may block and report their throughput; a system whose handlers must not
// block runs the echo alone; every other system's figures are also given
// as ratios to the Versus system's, and an unavailable system is skipped
// with its reason.
func TestMixedScenario(t *testing.T) {
	sc := tiny("mixed-c1", 1, 64)
	sc.Repeats, sc.SleepConns, sc.Slow = 2, 4, 10*time.Millisecond
	sc.Only = []string{"reactor-mixed", "reactor-inline", "std"}
	sc.Versus = "reactor-inline"
	rep, err := Run(context.Background(), Options{Systems: pick(t, "reactor-mixed", "reactor-inline", "std", "floor-std"), Scenarios: []Scenario{sc}, Command: testCommand(t)})
	if err != nil {
		t.Fatal(err)
	}
	for _, res := range rep.Scenarios[0].Results {
		switch res.System {
		case "floor-std":
			if res.Skipped != notInScenario {
				t.Errorf("floor-std: skipped %q", res.Skipped)
			}
		case "reactor-mixed":
			if res.Skipped != "" {
				if !strings.Contains(res.Skipped, "HandlerOptions") {
					t.Errorf("reactor-mixed: skipped %q", res.Skipped)
				}
				continue
			}
			fallthrough
		case "std":
			for _, s := range res.Samples {
				if s.SleepConns != 4 || s.SleepThroughput <= 0 || s.Requests == 0 {
					t.Errorf("%s: sample %+v", res.System, s)
				}
			}
			if st := res.Versus["p50_us"]; st == nil || st.Ratio <= 0 {
				t.Errorf("%s: no p50 ratio to reactor-inline: %+v", res.System, res.Versus)
			}
		case "reactor-inline":
			for _, s := range res.Samples {
				if s.SleepConns != 0 || s.Requests == 0 {
					t.Errorf("%s: sample %+v", res.System, s)
				}
			}
		}
	}
	var table bytes.Buffer
	rep.WriteTable(&table)
	for _, want := range []string{"sleep req/s", "×reactor-inline", "at most 400 req/s"} {
		if !strings.Contains(table.String(), want) {
			t.Errorf("table lacks %q:\n%s", want, table.String())
		}
	}
}
