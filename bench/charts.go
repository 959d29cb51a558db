package bench

import (
	"errors"
	"fmt"
	"path/filepath"
	"slices"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"
)

// errPoints is points with vertical error bars (the min–max range).
type errPoints struct {
	plotter.XYs
	plotter.YErrors
}

func yerr(st *Stat) struct{ Low, High float64 } {
	return struct{ Low, High float64 }{st.Median - st.Min, st.Max - st.Median}
}

// WriteCharts draws the report's charts into dir as SVG and PNG files and
// returns their paths: throughput against connections, latency percentiles
// of each connection-ladder, paced and mixed scenario, and server memory per idle
// connection. Charts without data are not drawn.
func (r *Report) WriteCharts(dir string) ([]string, error) {
	var files []string
	var errs []error
	save := func(p *plot.Plot, name string) {
		for _, ext := range []string{".svg", ".png"} {
			path := filepath.Join(dir, name+ext)
			if err := savePlot(p, path); err != nil {
				errs = append(errs, err)
				continue
			}
			files = append(files, path)
		}
	}
	if p, err := r.throughputChart(); err != nil {
		errs = append(errs, err)
	} else if p != nil {
		save(p, "throughput-vs-conns")
	}
	for _, sr := range r.Scenarios {
		if sc := sr.Scenario; !sc.ConnLadder && sc.Rate == 0 && sc.SleepConns == 0 {
			continue
		}
		if p, err := r.latencyChart(sr); err != nil {
			errs = append(errs, err)
		} else if p != nil {
			save(p, "latency-"+sr.Scenario.Name)
		}
	}
	for _, sr := range r.Scenarios {
		if !sr.Scenario.Idle {
			continue
		}
		if p, err := r.memoryChart(sr); err != nil {
			errs = append(errs, err)
		} else if p != nil {
			save(p, "memory-per-conn")
		}
		break
	}
	return files, errors.Join(errs...)
}

// savePlot saves p to path, turning a panic of the plotting library (it
// panics on some degenerate axes) into an error: a chart that cannot be
// drawn must not lose the run.
func savePlot(p *plot.Plot, path string) (err error) {
	defer func() {
		if v := recover(); v != nil {
			err = fmt.Errorf("bench: chart %s: %v", filepath.Base(path), v)
		}
	}()
	return p.Save(9*vg.Inch, 5*vg.Inch, path)
}

// ran returns the results of sr that have figures.
func ran(sr *ScenarioResult) []*Result {
	var out []*Result
	for _, res := range sr.Results {
		if res.Figures != nil {
			out = append(out, res)
		}
	}
	return out
}

func (r *Report) throughputChart() (*plot.Plot, error) {
	type series struct {
		pts errPoints
	}
	bySystem := map[string]*series{}
	var order []string
	for _, sr := range r.Scenarios {
		if !sr.Scenario.ConnLadder {
			continue
		}
		for _, res := range ran(sr) {
			s := bySystem[res.System]
			if s == nil {
				s = &series{}
				bySystem[res.System] = s
				order = append(order, res.System)
			}
			st := res.Figures["throughput"]
			s.pts.XYs = append(s.pts.XYs, plotter.XY{X: float64(sr.Scenario.Conns), Y: st.Median})
			s.pts.YErrors = append(s.pts.YErrors, yerr(st))
		}
	}
	if len(order) == 0 {
		return nil, nil
	}
	p := plot.New()
	p.Title.Text = "Throughput against connections (64 B echo, loopback TCP; bars: min–max)"
	p.X.Label.Text = "connections"
	p.Y.Label.Text = "requests per second"
	p.X.Scale = plot.LogScale{}
	p.X.Tick.Marker = plot.LogTicks{Prec: -1}
	p.Legend.Top = true
	p.Legend.Left = true
	p.Add(plotter.NewGrid())
	lo, hi := 0.0, 0.0
	for _, s := range bySystem {
		for _, xy := range s.pts.XYs {
			if lo == 0 || xy.X < lo {
				lo = xy.X
			}
			hi = max(hi, xy.X)
		}
	}
	if lo == hi {
		// One connection count: a log axis needs a range around it.
		p.X.Min, p.X.Max = lo/2, hi*2
	}
	for i, name := range order {
		s := bySystem[name]
		l, pts, err := plotter.NewLinePoints(s.pts.XYs)
		if err != nil {
			return nil, err
		}
		l.Color = plotutil.Color(i)
		l.Dashes = plotutil.Dashes(i % 3)
		pts.Color = plotutil.Color(i)
		pts.Shape = plotutil.Shape(i)
		eb, err := plotter.NewYErrorBars(s.pts)
		if err != nil {
			return nil, err
		}
		eb.Color = plotutil.Color(i)
		p.Add(l, pts, eb)
		p.Legend.Add(name, l, pts)
	}
	p.Y.Min = 0
	p.Y.Tick.Marker = plainTicks{}
	return p, nil
}

// plainTicks are gonum's default ticks labelled like the table ("12.5k").
type plainTicks struct{}

func (plainTicks) Ticks(lo, hi float64) []plot.Tick {
	t := plot.DefaultTicks{}.Ticks(lo, hi)
	for i := range t {
		if t[i].Label != "" {
			t[i].Label = num(t[i].Value)
		}
	}
	return t
}

func (r *Report) latencyChart(sr *ScenarioResult) (*plot.Plot, error) {
	res := ran(sr)
	if len(res) == 0 {
		return nil, nil
	}
	p := plot.New()
	p.Title.Text = fmt.Sprintf("Latency percentiles, %s (%s)", sr.Scenario.Name, sr.Description)
	p.Y.Label.Text = "microseconds"
	p.Add(plotter.NewGrid())
	names := make([]string, len(res))
	for i, x := range res {
		names[i] = x.System
	}
	// Points on a log scale: the percentiles span orders of magnitude.
	for k, m := range []struct{ key, label string }{{"p50_us", "p50"}, {"p99_us", "p99"}, {"p999_us", "p99.9"}} {
		pts := make(plotter.XYs, len(res))
		for i, x := range res {
			pts[i] = plotter.XY{X: float64(i), Y: max(x.Figures[m.key].Median, 1)}
		}
		sc, err := plotter.NewScatter(pts)
		if err != nil {
			return nil, err
		}
		sc.Color = plotutil.Color(k)
		sc.Shape = plotutil.Shape(k)
		sc.Radius = vg.Points(4)
		p.Add(sc)
		p.Legend.Add(m.label, sc)
	}
	p.Legend.Top = true
	p.Legend.Left = true
	p.Y.Scale = plot.LogScale{}
	p.Y.Tick.Marker = plot.LogTicks{Prec: -1}
	p.Y.Max *= 3 // room for the legend
	p.NominalX(names...)
	p.X.Tick.Label.Rotation = 0.3
	p.X.Tick.Label.XAlign = -1
	p.X.Min, p.X.Max = -0.5, float64(len(res))-0.5
	return p, nil
}

func (r *Report) memoryChart(sr *ScenarioResult) (*plot.Plot, error) {
	res := ran(sr)
	if len(res) == 0 {
		return nil, nil
	}
	// Smallest first.
	res = slices.Clone(res)
	slices.SortStableFunc(res, func(a, b *Result) int {
		x, y := a.Figures["rss_per_conn_bytes"].Median, b.Figures["rss_per_conn_bytes"].Median
		switch {
		case x < y:
			return -1
		case x > y:
			return 1
		}
		return 0
	})
	p := plot.New()
	p.Title.Text = fmt.Sprintf("Server memory per idle connection (%d connections; bars: min–max)", sr.Scenario.Conns)
	p.Y.Label.Text = "RSS bytes per connection"
	p.Add(plotter.NewGrid())
	v := make(plotter.Values, len(res))
	pts := errPoints{}
	names := make([]string, len(res))
	for i, x := range res {
		st := x.Figures["rss_per_conn_bytes"]
		v[i] = st.Median
		names[i] = x.System
		pts.XYs = append(pts.XYs, plotter.XY{X: float64(i), Y: st.Median})
		pts.YErrors = append(pts.YErrors, yerr(st))
	}
	b, err := plotter.NewBarChart(v, vg.Points(24))
	if err != nil {
		return nil, err
	}
	b.Color = plotutil.Color(1)
	b.LineStyle.Width = 0
	eb, err := plotter.NewYErrorBars(pts)
	if err != nil {
		return nil, err
	}
	p.Add(b, eb)
	p.NominalX(names...)
	p.X.Tick.Label.Rotation = 0.3
	p.X.Tick.Label.XAlign = -1
	p.Y.Min = 0
	p.Y.Max *= 1.05
	p.Y.Tick.Marker = plainTicks{}
	return p, nil
}
