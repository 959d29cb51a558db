package bench

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"slices"
	"strings"
	"text/tabwriter"
	"time"
)

// Report is everything a run measured; it is what the JSON file holds.
type Report struct {
	// Format is 2 since ratios carry their range over paired rounds
	// (ratio_min, ratio_max); LoadReport fills them in for format 1. It is
	// 3 since paced scenarios (sent, failures, max_us), scenarios with
	// sleep connections (sleep_throughput) and results' ratios to a
	// scenario's second reference system (Result.Versus); older reports
	// have none of them, and nothing else changed.
	Format    int               `json:"format"`
	Started   time.Time         `json:"started"`
	Seconds   float64           `json:"seconds"` // wall time of the measurements
	Machine   Machine           `json:"machine"`
	Full      bool              `json:"full"`
	Baseline  string            `json:"baseline"` // the system ratios refer to
	Systems   []SystemInfo      `json:"systems"`
	Scenarios []*ScenarioResult `json:"scenarios"`
	Notes     []string          `json:"notes,omitempty"`
}

// SystemInfo describes a system in the report.
type SystemInfo struct {
	Name     string `json:"name"`
	Doc      string `json:"doc"`
	Protocol string `json:"protocol"`
}

// ScenarioResult is one scenario's results, one per system.
type ScenarioResult struct {
	Scenario    Scenario  `json:"scenario"`
	Description string    `json:"description"`
	Results     []*Result `json:"results"`
	// Disturbed is the most CPU that other processes and the hypervisor
	// took during any of this scenario's points, in CPUs.
	Disturbed float64 `json:"disturbed_cpus"`
}

// busyCPUs is the disturbance above which a scenario's figures are flagged.
const busyCPUs = 0.25

// Result is one system's samples in one scenario and their summary.
type Result struct {
	System  string           `json:"system"`
	Skipped string           `json:"skipped,omitempty"` // why it did not run
	Samples []Sample         `json:"samples,omitempty"`
	Figures map[string]*Stat `json:"figures,omitempty"` // by metric key
	// Versus holds, for a scenario with a second reference system
	// (Scenario.Versus), each figure's ratio to that system's, paired by
	// round, in Ratio, RatioMin, RatioMax and RatioSpreadPct; by metric
	// key.
	Versus map[string]*Stat `json:"versus,omitempty"`
}

// Stat summarizes one figure over the rounds.
type Stat struct {
	Median float64 `json:"median"`
	Min    float64 `json:"min"`
	Max    float64 `json:"max"`
	// SpreadPct is half the min–max range as a percentage of the median.
	SpreadPct float64 `json:"spread_pct"`
	// Ratio is the figure over the baseline's in the same scenario: the
	// median of the ratios of each round's samples (a round measures every
	// system once, side by side), or, when rounds cannot be paired, Median
	// over the baseline's median. Absent for the baseline itself or when
	// it did not run.
	Ratio float64 `json:"ratio,omitempty"`
	// RatioMin and RatioMax are the range of the rounds' ratios, and
	// RatioSpreadPct half that range as a percentage of Ratio.
	RatioMin       float64 `json:"ratio_min,omitempty"`
	RatioMax       float64 `json:"ratio_max,omitempty"`
	RatioSpreadPct float64 `json:"ratio_spread_pct,omitempty"`
}

// metric is one figure of a sample.
type metric struct {
	key, title string
	get        func(Sample) float64
}

var loadMetrics = []metric{
	{"throughput", "req/s", func(s Sample) float64 { return s.Throughput }},
	{"p50_us", "p50 µs", func(s Sample) float64 { return s.P50us }},
	{"p99_us", "p99 µs", func(s Sample) float64 { return s.P99us }},
	{"p999_us", "p99.9 µs", func(s Sample) float64 { return s.P999us }},
	{"cpu_us_per_req", "CPU µs/req", func(s Sample) float64 { return s.CPUusPerReq }},
	{"allocs_per_req", "allocs/req", func(s Sample) float64 { return s.AllocsPerReq }},
	{"sys_us_per_req", "sys µs/req", func(s Sample) float64 { return s.SysUsPerReq }},
	{"ctxsw_per_req", "ctxsw/req", func(s Sample) float64 { return s.CtxSwPerReq }},
	{"rss_mb", "RSS MB", func(s Sample) float64 { return float64(s.RSSBytes) / (1 << 20) }},
	{"goroutines", "goroutines", func(s Sample) float64 { return float64(s.Goroutines) }},
}

// pacedMetrics are the figures of a paced scenario (Scenario.Rate).
var pacedMetrics = append([]metric{
	{"sent", "sent", func(s Sample) float64 { return float64(s.Sent) }},
	{"verified", "verified", func(s Sample) float64 { return float64(s.Requests) }},
	{"failures", "failures", func(s Sample) float64 { return float64(s.Failures) }},
	{"max_us", "max µs", func(s Sample) float64 { return s.MaxUs }},
	{"connect_seconds", "connect s", func(s Sample) float64 { return s.ConnectSeconds }},
	{"load_cpu_us_per_req", "load CPU µs/req", func(s Sample) float64 { return s.LoadCPUusPerReq }},
}, loadMetrics...)

// sleepMetrics are the figures of a scenario with sleep connections.
var sleepMetrics = append([]metric{
	{"sleep_throughput", "sleep req/s", func(s Sample) float64 { return s.SleepThroughput }},
	{"max_us", "max µs", func(s Sample) float64 { return s.MaxUs }},
}, loadMetrics...)

var idleMetrics = []metric{
	{"rss_per_conn_bytes", "RSS B/conn", func(s Sample) float64 { return s.RSSPerConn }},
	{"heap_per_conn_bytes", "heap B/conn", func(s Sample) float64 { return s.HeapPerConn }},
	{"goroutines_per_conn", "goroutines/conn", func(s Sample) float64 { return s.GoroutinesPerConn }},
	{"rss_mb", "RSS MB", func(s Sample) float64 { return float64(s.RSSBytes) / (1 << 20) }},
	{"connect_seconds", "connect s", func(s Sample) float64 { return s.ConnectSeconds }},
}

func metricsOf(sc Scenario) []metric {
	switch {
	case sc.Idle:
		return idleMetrics
	case sc.Rate > 0:
		return pacedMetrics
	case sc.SleepConns > 0:
		return sleepMetrics
	}
	return loadMetrics
}

func newReport(o Options) *Report {
	r := &Report{Format: 3, Started: time.Now().UTC(), Machine: ReadMachine(), Full: o.Full, Baseline: o.Baseline}
	for _, s := range o.Systems {
		r.Systems = append(r.Systems, SystemInfo{Name: s.Name, Doc: s.Doc, Protocol: s.Protocol.String()})
	}
	return r
}

func (r *Report) note(format string, args ...any) {
	r.Notes = append(r.Notes, fmt.Sprintf(format, args...))
}

func summarize1(v []float64) *Stat {
	v = slices.Clone(v)
	slices.Sort(v)
	st := &Stat{Min: v[0], Max: v[len(v)-1]}
	if n := len(v); n%2 == 1 {
		st.Median = v[n/2]
	} else {
		st.Median = (v[n/2-1] + v[n/2]) / 2
	}
	if st.Median != 0 {
		st.SpreadPct = (st.Max - st.Min) / 2 / math.Abs(st.Median) * 100
	}
	return st
}

// summarize fills every result's figures and ratios, choosing the baseline.
func (r *Report) summarize() {
	ran := func(name string) bool {
		for _, sr := range r.Scenarios {
			for _, res := range sr.Results {
				if res.System == name && len(res.Samples) > 0 {
					return true
				}
			}
		}
		return false
	}
	if !ran(r.Baseline) {
		old := r.Baseline
		r.Baseline = ""
		if ran("floor-std") {
			r.Baseline = "floor-std"
		}
		if r.Baseline == "" {
			r.note("baseline %q did not run, nor floor-std: no ratios", old)
		} else {
			r.note("baseline %q did not run; ratios refer to %q", old, r.Baseline)
		}
	}
	var disturbed []string
	for _, sr := range r.Scenarios {
		for _, res := range sr.Results {
			for _, smp := range res.Samples {
				sr.Disturbed = max(sr.Disturbed, smp.OtherCPUs+smp.StealCPUs)
			}
			if len(res.Samples) == 0 {
				continue
			}
			res.Figures = map[string]*Stat{}
			for _, m := range metricsOf(sr.Scenario) {
				v := make([]float64, len(res.Samples))
				for i, s := range res.Samples {
					v[i] = m.get(s)
				}
				res.Figures[m.key] = summarize1(v)
			}
		}
		if sr.Disturbed > busyCPUs {
			disturbed = append(disturbed, sr.Scenario.Name)
		}
	}
	r.ratios()
	r.noteDisturbed(disturbed)
}

// ratios fills every figure's ratio to the baseline from the samples.
func (r *Report) ratios() {
	for _, sr := range r.Scenarios {
		var base *Result
		for _, res := range sr.Results {
			if res.System == r.Baseline && res.Figures != nil {
				base = res
			}
		}
		if base == nil {
			continue
		}
		for _, res := range sr.Results {
			if res == base || res.Figures == nil {
				continue
			}
			for _, m := range metricsOf(sr.Scenario) {
				pairRatios(res.Figures[m.key], m, res.Samples, base.Figures[m.key], base.Samples)
			}
		}
	}
	r.versus()
}

// versus fills Result.Versus for scenarios with a second reference system.
func (r *Report) versus() {
	for _, sr := range r.Scenarios {
		var ref *Result
		for _, res := range sr.Results {
			if sr.Scenario.Versus != "" && res.System == sr.Scenario.Versus && res.Figures != nil {
				ref = res
			}
		}
		if ref == nil {
			continue
		}
		for _, res := range sr.Results {
			if res == ref || res.Figures == nil {
				continue
			}
			res.Versus = map[string]*Stat{}
			for _, m := range metricsOf(sr.Scenario) {
				st := &Stat{}
				pairRatios(st, m, res.Samples, ref.Figures[m.key], ref.Samples)
				if st.Ratio != 0 {
					res.Versus[m.key] = st
				}
			}
		}
	}
}

// pairRatios fills st's ratio to the baseline b from the samples of the
// same rounds (s and bs): their median and range.
func pairRatios(st *Stat, m metric, s []Sample, b *Stat, bs []Sample) {
	if st == nil || b == nil || b.Median == 0 {
		return
	}
	byRound := map[int]float64{}
	for _, x := range bs {
		byRound[x.Repeat] = m.get(x)
	}
	var v []float64
	for _, x := range s {
		if bv, ok := byRound[x.Repeat]; ok && bv != 0 {
			v = append(v, m.get(x)/bv)
		}
	}
	if len(v) == 0 {
		st.Ratio = st.Median / b.Median
		st.RatioMin, st.RatioMax = st.Ratio, st.Ratio
		return
	}
	r := summarize1(v)
	st.Ratio, st.RatioMin, st.RatioMax, st.RatioSpreadPct = r.Median, r.Min, r.Max, r.SpreadPct
}

func (r *Report) noteDisturbed(disturbed []string) {
	if len(disturbed) > 0 {
		r.note("other processes or the hypervisor took over %.2g CPUs during scenarios %s: their figures are disturbed; rerun on a quiet machine", busyCPUs, strings.Join(disturbed, ", "))
	}
}

// WriteJSON writes the report to path, creating its directory.
func (r *Report) WriteJSON(path string) error {
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(b, '\n'), 0o644)
}

// LoadReport reads a report written by [Report.WriteJSON].
func LoadReport(path string) (*Report, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var r Report
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("bench: %s: %w", path, err)
	}
	if r.Format < 2 {
		r.ratios() // format 1 had no ratio ranges; the samples have all it takes
	}
	return &r, nil
}

// num formats v with about three significant digits and a k/M suffix.
func num(v float64) string {
	a := math.Abs(v)
	switch {
	case a >= 10e6:
		return fmt.Sprintf("%.1fM", v/1e6)
	case a >= 1e6:
		return fmt.Sprintf("%.2fM", v/1e6)
	case a >= 100e3:
		return fmt.Sprintf("%.0fk", v/1e3)
	case a >= 10e3:
		return fmt.Sprintf("%.1fk", v/1e3)
	case a >= 1000:
		return fmt.Sprintf("%.0f", v)
	case a >= 100:
		return fmt.Sprintf("%.0f", v)
	case a >= 10:
		return fmt.Sprintf("%.1f", v)
	case a >= 1:
		return fmt.Sprintf("%.2f", v)
	case a == 0:
		return "0"
	}
	return fmt.Sprintf("%.3f", v)
}

func spread(st *Stat) string {
	if st == nil {
		return "-"
	}
	return fmt.Sprintf("%s ±%.0f%%", num(st.Median), st.SpreadPct)
}

func ratio(st *Stat) string {
	if st == nil || st.Ratio == 0 {
		return "-"
	}
	return fmt.Sprintf("%.2f× ±%.0f%%", st.Ratio, st.RatioSpreadPct)
}

func med(st *Stat) string {
	if st == nil {
		return "-"
	}
	return num(st.Median)
}

// WriteTable writes the report as readable tables: per scenario, the median
// of each figure with its spread over the rounds and ratios to the
// baseline.
func (r *Report) WriteTable(w io.Writer) {
	m := r.Machine
	fmt.Fprintf(w, "Petrel benchmark — %s (cpuid: %d physical / %d logical cores), %d CPUs usable, %s, commit %s\n",
		m.CPU, m.PhysicalCores, m.LogicalCores, m.NumCPU, m.GoVersion, short(m.Commit))
	fmt.Fprintf(w, "Server and load generator share this machine. Each round measures every system once, side by side; figures are medians over the rounds ±half their min–max range; ×%s is the median of each round's ratio to %s, ±half their range.\n", r.Baseline, r.Baseline)
	b := "×" + r.Baseline
	for _, sr := range r.Scenarios {
		sc := sr.Scenario
		reps := fmt.Sprintf("%d rounds", sc.Repeats)
		if !sc.Idle {
			reps += " of " + sc.Duration.String()
		}
		fmt.Fprintf(w, "\n== %s: %s (%s)\n", sc.Name, sr.Description, reps)
		if sr.Disturbed > busyCPUs {
			fmt.Fprintf(w, "   DISTURBED: other processes took up to %.1f CPUs during these points\n", sr.Disturbed)
		}
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
		v := "×" + sc.Versus
		switch {
		case sc.Idle:
			fmt.Fprintf(tw, "system\tRSS B/conn\t%s\theap B/conn\tgoroutines/conn\tserver RSS MB\tconnect s\t\n", b)
		case sc.Rate > 0:
			fmt.Fprintf(tw, "system\tsent\tverified\tfailures\tp50 µs\tp99 µs\t%s\tmax µs\tCPU µs/req\t%s\tload CPU µs/req\tRSS MB\tgoroutines\tconnect s\t\n", b, b)
		case sc.SleepConns > 0:
			fmt.Fprintf(tw, "system\techo req/s\tp50 µs\t%s\t%s\tp99 µs\t%s\t%s\tmax µs\tsleep conns\tsleep req/s\tCPU µs/req\tgoroutines\t\n", b, v, b, v)
		default:
			fmt.Fprintf(tw, "system\treq/s\t%s\tp50 µs\t%s\tp99 µs\t%s\tp99.9 µs\tCPU µs/req\t%s\tsys µs\tctxsw/req\tallocs/req\tRSS MB\t\n", b, b, b, b)
		}
		var skipped []string
		for _, res := range sr.Results {
			if res.Figures == nil {
				if res.Skipped != "" && res.Skipped != notInScenario {
					skipped = append(skipped, res.System+" ("+res.Skipped+")")
				}
				continue
			}
			f := res.Figures
			vs := func(k string) string {
				if res.System == sc.Versus {
					return "1"
				}
				return ratio(res.Versus[k])
			}
			if sc.Rate > 0 {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t\n", res.System,
					med(f["sent"]), med(f["verified"]), med(f["failures"]),
					spread(f["p50_us"]), spread(f["p99_us"]), ratio(f["p99_us"]), med(f["max_us"]),
					spread(f["cpu_us_per_req"]), ratio(f["cpu_us_per_req"]), med(f["load_cpu_us_per_req"]),
					med(f["rss_mb"]), med(f["goroutines"]), med(f["connect_seconds"]))
				continue
			}
			if sc.SleepConns > 0 {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%d\t%s\t%s\t%s\t\n", res.System,
					spread(f["throughput"]), spread(f["p50_us"]), ratio(f["p50_us"]), vs("p50_us"),
					spread(f["p99_us"]), ratio(f["p99_us"]), vs("p99_us"), med(f["max_us"]),
					res.Samples[0].SleepConns, spread(f["sleep_throughput"]),
					med(f["cpu_us_per_req"]), med(f["goroutines"]))
				continue
			}
			if sc.Idle {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t\n", res.System,
					spread(f["rss_per_conn_bytes"]), ratio(f["rss_per_conn_bytes"]),
					med(f["heap_per_conn_bytes"]), fmt.Sprintf("%.2f", f["goroutines_per_conn"].Median),
					med(f["rss_mb"]), med(f["connect_seconds"]))
			} else {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t\n", res.System,
					spread(f["throughput"]), ratio(f["throughput"]),
					spread(f["p50_us"]), ratio(f["p50_us"]), spread(f["p99_us"]), ratio(f["p99_us"]), med(f["p999_us"]),
					spread(f["cpu_us_per_req"]), ratio(f["cpu_us_per_req"]), med(f["sys_us_per_req"]),
					med(f["ctxsw_per_req"]), med(f["allocs_per_req"]), med(f["rss_mb"]))
			}
		}
		tw.Flush()
		if sc.Rate > 0 {
			fmt.Fprintf(w, "   sent and verified: requests in a round's measured window (median over the rounds); latency from each request's scheduled send time\n")
			for _, res := range sr.Results {
				for _, smp := range res.Samples {
					if smp.FirstFailure != "" {
						fmt.Fprintf(w, "   %s round %d: %d failures, the first: %s\n", res.System, smp.Repeat, smp.Failures, smp.FirstFailure)
						break
					}
				}
			}
		}
		if sc.SleepConns > 0 {
			fmt.Fprintf(w, "   sleep connections call a %v handler back to back: at most %s req/s; %s = ratio to %s paired by round\n",
				sc.Slow, num(float64(sc.SleepConns)/sc.Slow.Seconds()), v, sc.Versus)
		}
		if len(sc.Only) > 0 {
			fmt.Fprintf(w, "   runs only on %s\n", strings.Join(sc.Only, ", "))
		}
		if len(skipped) > 0 {
			fmt.Fprintf(w, "   skipped: %s\n", strings.Join(skipped, "; "))
		}
	}
	fmt.Fprintln(w, "\nSystems:")
	for _, s := range r.Systems {
		fmt.Fprintf(w, "  %-15s %s\n", s.Name, s.Doc)
	}
	for _, n := range r.Notes {
		fmt.Fprintf(w, "Note: %s\n", n)
	}
}

func short(commit string) string {
	if len(commit) > 12 {
		return commit[:12]
	}
	if commit == "" {
		return "unknown"
	}
	return commit
}

// Agreement counts, for [Compare], the figures that two reports both have
// and how many of them agree: their min–max ranges over the rounds
// overlap.
type Agreement struct {
	Figures, FiguresAgree int // absolute figures, every system
	Ratios, RatiosAgree   int // ratios to the baseline, every other system
	// Differ names the ratios that do not agree, as
	// "scenario/system figure: old range vs new range".
	Differ []string
	// ByChance is how many ratios would not agree on average even if both
	// runs sampled one steady machine: with n and m rounds, all of one
	// run's values fall on one side of all of the other's with probability
	// 2·n!·m!/(n+m)! (2/252 for 5 rounds each).
	ByChance float64
}

// apartByChance is the probability that n and m values drawn from one
// continuous distribution make min–max ranges that do not overlap.
func apartByChance(n, m int) float64 {
	if n == 0 || m == 0 {
		return 0
	}
	p := 2.0
	for i := 1; i <= m; i++ { // n!·m!/(n+m)! = 1/C(n+m, m)
		p *= float64(i) / float64(n+i)
	}
	return p
}

// compared are the figures Compare checks, by metric key.
var compared = []struct{ key, title string }{
	{"throughput", "req/s"}, {"p50_us", "p50 µs"}, {"p99_us", "p99 µs"}, {"cpu_us_per_req", "CPU µs/req"},
}

// overlap reports whether the ranges [a0,a1] and [b0,b1] meet, give or
// take tol: half a unit of the precision a figure is printed with, so that
// ranges printed alike (0.07–0.07 and 0.07–0.07) are not called apart.
func overlap(a0, a1, b0, b1, tol float64) bool { return a0 <= b1+tol && b0 <= a1+tol }

// ratioTol is half a unit of the printed precision of ratios (%.2f).
const ratioTol = 0.005

// Compare writes, for every scenario and system in both reports, how the
// main figures and their ratios to the baseline changed from old to cur,
// and whether the runs agree within the spread they report: two figures
// agree when their min–max ranges over the rounds overlap; "≠" marks those
// that do not. Ratios are measured side by side in each round, so a drift
// of the machine between the runs cancels out of them; absolute figures
// move with it. It returns the counts.
func Compare(w io.Writer, old, cur *Report) Agreement {
	fmt.Fprintf(w, "Change from %s (commit %s) to %s (commit %s); ≠ = the two runs' min–max ranges do not overlap\n",
		old.Started.Format(time.DateTime), short(old.Machine.Commit), cur.Started.Format(time.DateTime), short(cur.Machine.Commit))
	find := func(r *Report, scenario, system string) *Result {
		for _, sr := range r.Scenarios {
			if sr.Scenario.Name != scenario {
				continue
			}
			for _, res := range sr.Results {
				if res.System == system && res.Figures != nil {
					return res
				}
			}
		}
		return nil
	}
	var ag Agreement
	sameBase := old.Baseline == cur.Baseline
	if !sameBase {
		fmt.Fprintf(w, "The runs' ratios refer to different baselines (%q and %q): ratios are not compared.\n", old.Baseline, cur.Baseline)
	}
	abs := func(o, n *Stat) string {
		if o == nil || n == nil || o.Median == 0 {
			return "-"
		}
		ag.Figures++
		mark := " ≠"
		if overlap(o.Min, o.Max, n.Min, n.Max, 0) {
			ag.FiguresAgree++
			mark = ""
		}
		d := (n.Median - o.Median) / math.Abs(o.Median) * 100
		return fmt.Sprintf("%s→%s %+.0f%%%s", num(o.Median), num(n.Median), d, mark)
	}
	var rounds float64 // apartByChance of the current row's rounds
	rel := func(where string, o, n *Stat) string {
		if !sameBase || o == nil || n == nil || o.Ratio == 0 || n.Ratio == 0 {
			return "-"
		}
		ag.Ratios++
		ag.ByChance += rounds
		mark := " ≠"
		if overlap(o.RatioMin, o.RatioMax, n.RatioMin, n.RatioMax, ratioTol) {
			ag.RatiosAgree++
			mark = ""
		} else {
			ag.Differ = append(ag.Differ, fmt.Sprintf("%s: %.2f–%.2f vs %.2f–%.2f", where, o.RatioMin, o.RatioMax, n.RatioMin, n.RatioMax))
		}
		return fmt.Sprintf("%.2f→%.2f%s", o.Ratio, n.Ratio, mark)
	}
	b := "×" + cur.Baseline
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "scenario\tsystem\treq/s or RSS B/conn\t%s\tp50 µs\t%s\tp99 µs\t%s\tCPU µs/req\t%s\n", b, b, b, b)
	for _, sr := range cur.Scenarios {
		for _, res := range sr.Results {
			o := find(old, sr.Scenario.Name, res.System)
			if res.Figures == nil || o == nil {
				continue
			}
			where := sr.Scenario.Name + "/" + res.System
			rounds = apartByChance(len(o.Samples), len(res.Samples))
			if sr.Scenario.Idle {
				k := "rss_per_conn_bytes"
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t\t\t\t\t\t\n", sr.Scenario.Name, res.System,
					abs(o.Figures[k], res.Figures[k]), rel(where+" RSS B/conn", o.Figures[k], res.Figures[k]))
				continue
			}
			fmt.Fprintf(tw, "%s\t%s", sr.Scenario.Name, res.System)
			for _, c := range compared {
				fmt.Fprintf(tw, "\t%s\t%s", abs(o.Figures[c.key], res.Figures[c.key]), rel(where+" "+c.title, o.Figures[c.key], res.Figures[c.key]))
			}
			fmt.Fprintln(tw)
		}
	}
	tw.Flush()
	fmt.Fprintf(w, "\nRatios to %s: %d of %d agree within the spread the runs report (min–max over the rounds overlap);\n", cur.Baseline, ag.RatiosAgree, ag.Ratios)
	fmt.Fprintf(w, "even two runs on a perfectly steady machine would leave about %.1f apart by chance.\n", ag.ByChance)
	for _, d := range ag.Differ {
		fmt.Fprintf(w, "  differ: %s\n", d)
	}
	fmt.Fprintf(w, "Absolute figures: %d of %d agree; they also move with the machine's load between runs.\n", ag.FiguresAgree, ag.Figures)
	return ag
}
