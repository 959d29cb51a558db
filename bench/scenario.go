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
	// Repeats is how many times each system runs it, interleaved.
	Repeats int `json:"repeats"`
	// ConnLadder marks the 64-byte TCP scenarios plotted as throughput
	// against connections.
	ConnLadder bool `json:"conn_ladder,omitempty"`
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
	if sc.SlowShare > 0 {
		parts = append(parts, fmt.Sprintf("%g%% of requests to a %v handler", sc.SlowShare*100, sc.Slow))
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

// Suite returns the scenarios of the default suite (about three minutes on
// two cores) or, with full, the long one: longer points, more repeats, more
// connection counts and payload sizes.
func Suite(full bool) []Scenario {
	d, w, r, rBig := 600*time.Millisecond, 120*time.Millisecond, 3, 2
	if full {
		d, w, r, rBig = 3*time.Second, 500*time.Millisecond, 5, 5
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
		rep := r
		if c >= 1024 {
			rep = rBig
		}
		s = append(s, ladder(c, rep))
	}
	if full {
		s = append(s, pt("c16-1KiB", 16, 1<<10, r))
	}
	s = append(s, pt("c16-16KiB", 16, 16<<10, rBig))
	if full {
		s = append(s, pt("c8-256KiB", 8, 256<<10, r))
	}
	s = append(s, pt("c4-1MiB", 4, 1<<20, rBig))
	u := pt("unix-c64-64B", 64, 64, rBig)
	u.Unix = true
	h := pt("hmac-c64-64B", 64, 64, rBig)
	h.HMAC = true
	t := pt("tls-c64-64B", 64, 64, rBig)
	t.TLS = true
	m := pt("slowmix-c64-64B", 64, 64, rBig)
	m.SlowShare, m.Slow = 0.05, time.Millisecond
	idle := Scenario{Name: "idle-10k", Conns: 10000, Payload: 64, Idle: true, Repeats: rBig}
	return append(s, u, h, t, m, idle)
}

// SelectScenarios returns the scenarios of all named in names (comma
// separated), in all's order; "" or "all" selects every one.
func SelectScenarios(all []Scenario, names string) ([]Scenario, error) {
	if names == "" || names == "all" {
		return all, nil
	}
	want := map[string]bool{}
	for _, n := range strings.Split(names, ",") {
		want[strings.TrimSpace(n)] = true
	}
	var out []Scenario
	for _, s := range all {
		if want[s.Name] {
			out = append(out, s)
			delete(want, s.Name)
		}
	}
	for n := range want {
		return nil, fmt.Errorf("bench: unknown scenario %q", n)
	}
	return out, nil
}
