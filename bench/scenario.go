package bench

import (
	"fmt"
	"strings"
	"time"
)

// Scenario is one workload every system runs.
type Scenario struct {
	Name string `json:"name"`
	// Conns is the number of client connections, each a goroutine doing
	// synchronous request/answer (or, for Idle, the connections opened).
	Conns int `json:"conns"`
	// Payload is the request payload size in bytes; answers echo it.
	Payload int `json:"payload_bytes"`
	// Unix runs over a Unix domain socket instead of loopback TCP.
	Unix bool `json:"unix,omitempty"`
	// HMAC signs every frame (Petrel systems only).
	HMAC bool `json:"hmac,omitempty"`
	// TLS runs over TLS 1.3.
	TLS bool `json:"tls,omitempty"`
	// SlowShare is the share of requests (0..1) sent to the "sleep"
	// handler, which blocks for Slow before echoing.
	SlowShare float64       `json:"slow_share,omitempty"`
	Slow      time.Duration `json:"slow_ns,omitempty"`
	// Idle opens Conns connections, uses each once, and measures the
	// server's memory and goroutines per connection instead of load.
	Idle bool `json:"idle,omitempty"`
	// Warmup runs load before measuring; Duration is the measured window.
	Warmup   time.Duration `json:"warmup_ns"`
	Duration time.Duration `json:"duration_ns"`
	// Repeats is the number of rounds: each measures every system once,
	// in an order rotated from round to round.
	Repeats int `json:"repeats"`
	// ConnLadder marks the 64-byte TCP scenarios plotted as throughput
	// against connections.
	ConnLadder bool `json:"conn_ladder,omitempty"`
	// Version is the Petrel protocol version the load client negotiates
	// (0, the classic one, or 1); systems without version 1 skip a
	// version-1 scenario.
	Version uint8 `json:"protocol_version,omitempty"`
	// Rate, when positive, paces the load instead of running it flat out:
	// each connection sends Rate requests per second, the connections'
	// sends spread evenly over each period, from load-generator processes
	// of their own (see paced.go). Latency counts from the scheduled send
	// time, so a late answer also delays the requests queued behind it.
	Rate float64 `json:"rate_per_conn,omitempty"`
	// SleepConns, when positive, adds that many connections calling the
	// "sleep" handler (Slow) back to back beside the Conns measured echo
	// connections; their throughput is reported. Systems whose handlers
	// cannot block (no FeatSlow) run the echo connections alone.
	SleepConns int `json:"sleep_conns,omitempty"`
	// Only, when set, names the systems the scenario runs on.
	Only []string `json:"only,omitempty"`
	// Versus names a second reference system: every other system's
	// figures are also given as ratios to its, paired by round.
	Versus string `json:"versus,omitempty"`
}

// needs lists the features sc requires of a system.
func (sc Scenario) needs() []Feature {
	var f []Feature
	if sc.Unix {
		f = append(f, FeatUnix)
	}
	if sc.HMAC {
		f = append(f, FeatHMAC)
	}
	if sc.TLS {
		f = append(f, FeatTLS)
	}
	if sc.SlowShare > 0 {
		f = append(f, FeatSlow)
	}
	if sc.Version == 1 {
		f = append(f, FeatV1)
	}
	return f
}

// Describe is a one-line description of sc.
func (sc Scenario) Describe() string {
	if sc.Idle {
		return fmt.Sprintf("%d idle connections, each used once: server memory and goroutines per connection", sc.Conns)
	}
	parts := []string{fmt.Sprintf("%d conn", sc.Conns), sizeText(sc.Payload) + " payload"}
	if sc.Conns != 1 {
		parts[0] += "s"
	}
	switch {
	case sc.Unix:
		parts = append(parts, "Unix socket")
	default:
		parts = append(parts, "TCP")
	}
	if sc.TLS {
		parts = append(parts, "TLS")
	}
	if sc.HMAC {
		parts = append(parts, "HMAC")
	}
	if sc.Version > 0 {
		parts = append(parts, fmt.Sprintf("protocol version %d", sc.Version))
	}
	if sc.Rate > 0 {
		parts = append(parts, fmt.Sprintf("%g request/s per connection, spread evenly, from separate load processes", sc.Rate))
	}
	if sc.SlowShare > 0 {
		parts = append(parts, fmt.Sprintf("%g%% of requests to a %v handler", sc.SlowShare*100, sc.Slow))
	}
	if sc.SleepConns > 0 {
		parts[0] += " of echo"
		parts = append(parts, fmt.Sprintf("beside %d connections calling a %v handler back to back", sc.SleepConns, sc.Slow))
	}
	return strings.Join(parts, ", ")
}

func sizeText(n int) string {
	switch {
	case n >= 1<<20 && n%(1<<20) == 0:
		return fmt.Sprintf("%d MiB", n>>20)
	case n >= 1<<10 && n%(1<<10) == 0:
		return fmt.Sprintf("%d KiB", n>>10)
	}
	return fmt.Sprintf("%d B", n)
}

// Suite returns the scenarios of the default suite (about two and a half
// minutes on two cores) or, with full, the long one: longer slices, more
// rounds, more connection counts and payload sizes.
func Suite(full bool) []Scenario {
	// Load scenarios: r rounds, each a warm-up (w in the first round, w/2
	// later) then a measured slice of d per system. Idle scenarios: rIdle rounds, each a fresh server.
	d, w, r, rIdle := 200*time.Millisecond, 100*time.Millisecond, 5, 3
	if full {
		d, w, r, rIdle = 2*time.Second, 300*time.Millisecond, 7, 5
	}
	pt := func(name string, conns, payload, repeats int) Scenario {
		return Scenario{Name: name, Conns: conns, Payload: payload, Warmup: w, Duration: d, Repeats: repeats}
	}
	ladder := func(conns, repeats int) Scenario {
		s := pt(fmt.Sprintf("c%d-64B", conns), conns, 64, repeats)
		s.ConnLadder = true
		return s
	}
	var s []Scenario
	conns := []int{1, 64, 1024}
	if full {
		conns = []int{1, 4, 16, 64, 256, 1024, 4096}
	}
	for _, c := range conns {
		s = append(s, ladder(c, r))
	}
	if full {
		s = append(s, pt("c16-1KiB", 16, 1<<10, r))
	}
	s = append(s, pt("c16-16KiB", 16, 16<<10, r))
	if full {
		s = append(s, pt("c8-256KiB", 8, 256<<10, r))
	}
	s = append(s, pt("c4-1MiB", 4, 1<<20, r))
	u := pt("unix-c64-64B", 64, 64, r)
	u.Unix = true
	h := pt("hmac-c64-64B", 64, 64, r)
	h.HMAC = true
	h1 := h
	h1.Name, h1.Version = "hmac-v1-c64-64B", 1
	t := pt("tls-c64-64B", 64, 64, r)
	t.TLS = true
	m := pt("slowmix-c64-64B", 64, 64, r)
	m.SlowShare, m.Slow = 0.05, time.Millisecond
	// Echo at one connection while 32 others keep 50 ms sleeps running:
	// in one reactor server, echo on the event loop, sleep on the pool.
	mix := pt("mixed-c1-sleep50ms", 1, 64, 3)
	mix.Warmup, mix.Duration = 200*time.Millisecond, time.Second
	mix.SleepConns, mix.Slow = 32, 50*time.Millisecond
	mix.Only = []string{"reactor-mixed", "reactor-inline", "reactor-pool", "std"}
	mix.Versus = "reactor-inline"
	idle := Scenario{Name: "idle-10k", Conns: 10000, Payload: 64, Idle: true, Repeats: rIdle}
	s = append(s, u, h, h1, t, m, mix, idle)
	// One server at the open-file ceiling: 19,000 connections, each one
	// 64-byte echo a second, spread evenly, from load processes of their own.
	fd := Scenario{Name: "c19k-1rps", Conns: 19000, Payload: 64, Rate: 1,
		Warmup: 2 * time.Second, Duration: 5 * time.Second, Repeats: 3,
		Only: []string{"reactor-pool", "std"}}
	return append(s, fd)
}

// SelectScenarios returns the scenarios of all named in names (comma
// separated), in all's order; "" or "all" selects every one.
func SelectScenarios(all []Scenario, names string) ([]Scenario, error) {
	return selectNamed(all, names, "scenario", func(s Scenario) string { return s.Name })
}

// selectNamed returns the elements of all named in names (comma
// separated), in all's order; "" or "all" selects every one. kind names
// the elements in the error for an unknown name.
func selectNamed[T any](all []T, names, kind string, name func(T) string) ([]T, error) {
	if names == "" || names == "all" {
		return all, nil
	}
	want := map[string]bool{}
	for _, n := range strings.Split(names, ",") {
		want[strings.TrimSpace(n)] = true
	}
	var out []T
	for _, s := range all {
		if want[name(s)] {
			out = append(out, s)
			delete(want, name(s))
		}
	}
	for n := range want {
		return nil, fmt.Errorf("bench: unknown %s %q", kind, n)
	}
	return out, nil
}
