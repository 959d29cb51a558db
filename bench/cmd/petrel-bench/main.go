// Command petrel-bench runs Petrel's benchmark suite: the reactor engine
// (worker pool and inline handlers), the stdlib engine (the baseline),
// minimal stdlib and gnet servers (the floors), net/rpc and gRPC, each in its
// own server process, on echo workloads. It prints a table, writes a JSON
// report and charts, and can compare with an earlier report.
//
//	petrel-bench                      # the default suite, about 2.5 minutes on 2 cores
//	petrel-bench -full                # the long suite
//	petrel-bench -compare old.json    # run, then check it agrees with old.json figure by figure
//	petrel-bench -compare old.json -against new.json   # compare two reports, no run
//	petrel-bench -report results.json -out dir          # table and charts of an old report
//	petrel-bench -systems std,reactor-pool -scenarios c64-64B -duration 2s
//	petrel-bench -drive 127.0.0.1:7000 -conns 64 -duration 3s   # load an already running server
//
// With -serve SYSTEM it plays the server role instead, and with -load the
// load generator of paced scenarios (see package bench).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/petrel-rpc/petrel/bench"
)

func main() {
	if slices.Contains(os.Args[1:], "-load") {
		if err := bench.LoadMain(os.Args[1:], os.Stdin, os.Stdout); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		return
	}
	if slices.ContainsFunc(os.Args[1:], isServeFlag) {
		if err := bench.ServeMain(os.Args[1:], bench.Systems(), os.Stdin, os.Stdout); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		return
	}
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "petrel-bench:", err)
		os.Exit(1)
	}
}

// isServeFlag reports whether arg is -serve, --serve or -serve=NAME: the
// server role.
func isServeFlag(arg string) bool {
	arg = strings.TrimPrefix(arg, "-")
	return arg == "-serve" || arg == "serve" || strings.HasPrefix(arg, "serve=") || strings.HasPrefix(arg, "-serve=")
}

func run() error {
	var (
		full      = flag.Bool("full", false, "run the long suite (longer slices, more rounds, more connection counts and sizes)")
		out       = flag.String("out", "bench-results", "directory for results.json and the charts")
		jsonPath  = flag.String("json", "", "JSON report path (default OUT/results.json)")
		systems   = flag.String("systems", "all", "comma-separated systems to run")
		scenarios = flag.String("scenarios", "all", "comma-separated scenarios to run")
		duration  = flag.Duration("duration", 0, "measured time per slice (default: the suite's)")
		repeats   = flag.Int("rounds", 0, "rounds per scenario (default: the suite's)")
		idleConns = flag.Int("idle-conns", 0, "connections of the idle scenario (default 10000)")
		baseline  = flag.String("baseline", "std", "system that ratios refer to")
		compare   = flag.String("compare", "", "an earlier results.json to compare with")
		against   = flag.String("against", "", "with -compare: compare with this report instead of running")
		replot    = flag.String("report", "", "print the table and draw the charts (into -out) of this existing report instead of running")
		quiet     = flag.Bool("quiet", false, "no progress bar")
		list      = flag.Bool("list", false, "list systems and scenarios and exit")
		drive     = flag.String("drive", "", "only drive echo load against the Petrel server at this address for -duration (default 3s) and print the answers counted")
		conns     = flag.Int("conns", 1, "with -drive: connections")
		payload   = flag.Int("payload", 64, "with -drive: payload bytes")
	)
	flag.IntVar(repeats, "repeats", 0, "the same as -rounds (its former name)")
	flag.Parse()

	if *drive != "" {
		if *conns < 1 || *payload < 0 {
			return fmt.Errorf("-drive needs -conns of at least 1 and a -payload of 0 or more, not %d and %d", *conns, *payload)
		}
		d := *duration
		if d == 0 {
			d = 3 * time.Second
		}
		n, err := bench.Drive(context.Background(), *drive, *conns, *payload, d)
		if err != nil {
			return err
		}
		fmt.Printf("answers %d seconds %g req/s %.0f\n", n, d.Seconds(), float64(n)/d.Seconds())
		return nil
	}

	if *against != "" {
		if *compare == "" {
			return errors.New("-against needs -compare")
		}
		return compareFiles(*compare, *against)
	}

	if *replot != "" {
		rep, err := bench.LoadReport(*replot)
		if err != nil {
			return err
		}
		rep.WriteTable(os.Stdout)
		if err := os.MkdirAll(*out, 0o755); err != nil {
			return err
		}
		files, err := rep.WriteCharts(*out)
		fmt.Printf("\nCharts: %s\n", strings.Join(files, " "))
		return err
	}

	allSys := bench.Systems()
	allSc := bench.Suite(*full)
	if *list {
		for _, s := range allSys {
			fmt.Printf("system   %-16s %s\n", s.Name, s.Doc)
		}
		for _, s := range allSc {
			fmt.Printf("scenario %-16s %s\n", s.Name, s.Describe())
		}
		return nil
	}
	sys, err := bench.SelectSystems(allSys, *systems)
	if err != nil {
		return err
	}
	scs, err := bench.SelectScenarios(allSc, *scenarios)
	if err != nil {
		return err
	}
	for i := range scs {
		if *duration > 0 {
			scs[i].Duration = *duration
			scs[i].Warmup = min(scs[i].Warmup, *duration/2)
		}
		if *repeats > 0 {
			scs[i].Repeats = *repeats
		}
		if *idleConns > 0 && scs[i].Idle {
			scs[i].Conns = *idleConns
		}
	}
	var old *bench.Report
	if *compare != "" {
		if old, err = bench.LoadReport(*compare); err != nil {
			return err
		}
	}
	if err := os.MkdirAll(*out, 0o755); err != nil {
		return err
	}
	if *jsonPath == "" {
		*jsonPath = filepath.Join(*out, "results.json")
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	o := bench.Options{Systems: sys, Scenarios: scs, Baseline: *baseline, Full: *full}
	if !*quiet {
		o.Progress = os.Stderr
	}
	start := time.Now()
	rep, err := bench.Run(ctx, o)
	if err != nil {
		return err
	}
	rep.WriteTable(os.Stdout)
	if err := rep.WriteJSON(*jsonPath); err != nil {
		return err
	}
	files, err := rep.WriteCharts(*out)
	if err != nil {
		fmt.Fprintln(os.Stderr, "petrel-bench: charts:", err)
	}
	fmt.Printf("\nJSON: %s\nCharts: %s\nTook %s.\n", *jsonPath, strings.Join(files, " "), time.Since(start).Round(time.Second))
	if old != nil {
		fmt.Println()
		bench.Compare(os.Stdout, old, rep)
	}
	return nil
}

func compareFiles(oldPath, newPath string) error {
	old, err := bench.LoadReport(oldPath)
	if err != nil {
		return err
	}
	cur, err := bench.LoadReport(newPath)
	if err != nil {
		return err
	}
	bench.Compare(os.Stdout, old, cur)
	return nil
}
