package bench

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime"
	"runtime/debug"
	"runtime/pprof"
	"strconv"
	"syscall"
	"time"
)

// ServerStats is what the server role reports on its control channel.
type ServerStats struct {
	CPUSeconds float64 `json:"cpu_seconds"` // user+system CPU time of the process so far
	SysSeconds float64 `json:"sys_seconds"` // the system (kernel) part of it
	// CtxSwitches counts the context switches of all the process's
	// threads so far, voluntary (a thread sleeping: a futex wait, a
	// blocking epoll_wait) and not.
	CtxSwitches int64  `json:"ctx_switches"`
	RSSBytes    int64  `json:"rss_bytes"`  // resident set size (VmRSS)
	Goroutines  int    `json:"goroutines"` // runtime.NumGoroutine
	Mallocs     uint64 `json:"mallocs"`    // cumulative heap allocations
	HeapInuse   uint64 `json:"heap_inuse"` // bytes in in-use heap spans
}

// readStats measures this process. With free set it first returns freed
// memory to the OS, so RSS reflects live memory.
func readStats(free bool) ServerStats {
	if free {
		debug.FreeOSMemory()
	}
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return ServerStats{
		CPUSeconds:  tv(ru.Utime) + tv(ru.Stime),
		SysSeconds:  tv(ru.Stime),
		CtxSwitches: ru.Nvcsw + ru.Nivcsw,
		RSSBytes:    selfRSS(),
		Goroutines:  runtime.NumGoroutine(),
		Mallocs:     ms.Mallocs,
		HeapInuse:   ms.HeapInuse,
	}
}

func tv(t syscall.Timeval) float64 { return float64(t.Sec) + float64(t.Usec)/1e6 }

// selfRSS returns VmRSS from /proc/self/status, in bytes, or -1.
func selfRSS() int64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return -1
	}
	for line := range bytes.Lines(b) {
		if v, ok := bytes.CutPrefix(line, []byte("VmRSS:")); ok {
			f := bytes.Fields(v)
			if len(f) > 0 {
				n, err := strconv.ParseInt(string(f[0]), 10, 64)
				if err == nil {
					return n << 10 // kB
				}
			}
		}
	}
	return -1
}

// ServeMain is the server role: it parses args (-serve SYSTEM -addr ADDR
// [-hmac KEY] [-tls-cert FILE -tls-key FILE] [-slow D]), starts the named
// system from systems, prints "listening on ADDR" to stdout and answers the
// control commands read from stdin (see the package documentation) until
// stdin closes or SIGTERM arrives.
func ServeMain(args []string, systems []System, stdin io.Reader, stdout io.Writer) error {
	fs := flag.NewFlagSet("petrel-bench -serve", flag.ContinueOnError)
	name := fs.String("serve", "", "system to serve")
	addr := fs.String("addr", "127.0.0.1:0", "listen address: host:port or unix:///path")
	key := fs.String("hmac", "", "Petrel HMAC key")
	certFile := fs.String("tls-cert", "", "TLS certificate (PEM)")
	keyFile := fs.String("tls-key", "", "TLS key (PEM)")
	slow := fs.Duration("slow", time.Millisecond, "delay of the sleep handler")
	cpuProfile := fs.String("cpuprofile", "", "write a CPU profile of the server to this file until it exits")
	if err := fs.Parse(args); err != nil {
		return err
	}
	var sys *System
	for i := range systems {
		if systems[i].Name == *name {
			sys = &systems[i]
		}
	}
	if sys == nil {
		return fmt.Errorf("bench: unknown system %q", *name)
	}
	if sys.Unavailable != "" {
		return fmt.Errorf("bench: system %s unavailable: %s", sys.Name, sys.Unavailable)
	}
	raiseFileLimit()
	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err != nil {
			return fmt.Errorf("bench: %w", err)
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			f.Close()
			return fmt.Errorf("bench: %w", err)
		}
		defer func() {
			pprof.StopCPUProfile()
			f.Close()
		}()
	}
	cfg := ServeConfig{Addr: *addr, Slow: *slow}
	if *key != "" {
		cfg.HMACKey = []byte(*key)
	}
	if *certFile != "" {
		cert, err := tls.LoadX509KeyPair(*certFile, *keyFile)
		if err != nil {
			return fmt.Errorf("bench: %w", err)
		}
		cfg.TLS = &tls.Config{Certificates: []tls.Certificate{cert}}
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	srv, err := sys.Serve(ctx, cfg)
	if err != nil {
		return fmt.Errorf("bench: starting %s: %w", sys.Name, err)
	}
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
	defer signal.Stop(sigs)

	out := bufio.NewWriter(stdout)
	fmt.Fprintf(out, "listening on %s\n", srv.Addr())
	out.Flush()

	// The reader goroutine owns stdin; it ends when stdin closes.
	cmds := make(chan string)
	go func() {
		defer close(cmds)
		sc := bufio.NewScanner(stdin)
		for sc.Scan() {
			cmds <- sc.Text()
		}
	}()
	for {
		select {
		case <-sigs:
			return closeQuickly(srv)
		case cmd, ok := <-cmds:
			if !ok {
				return closeQuickly(srv)
			}
			switch cmd {
			case "stats", "stats free":
				b, _ := json.Marshal(readStats(cmd == "stats free"))
				fmt.Fprintf(out, "stats %s\n", b)
			default:
				fmt.Fprintf(out, "error unknown command %q\n", cmd)
			}
			out.Flush()
		}
	}
}

// closeQuickly closes srv but gives up after 100 ms: the process is about to
// exit anyway, the figures were taken already, and some servers (gnet's)
// take 500 ms to stop gracefully.
func closeQuickly(srv Server) error {
	done := make(chan struct{})
	go func() {
		srv.Close()
		close(done)
	}()
	t := time.NewTimer(100 * time.Millisecond)
	defer t.Stop()
	select {
	case <-done:
	case <-t.C:
	}
	return nil
}

// raiseFileLimit raises RLIMIT_NOFILE to its hard limit and returns the
// soft limit in force afterwards.
func raiseFileLimit() uint64 {
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		return 1024
	}
	if rl.Cur < rl.Max {
		rl.Cur = rl.Max
		syscall.Setrlimit(syscall.RLIMIT_NOFILE, &rl)
		syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl)
	}
	return rl.Cur
}
