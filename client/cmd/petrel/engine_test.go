package main

// Tests that need a server examples/server is not: one with introspection
// handlers, a broken echo, a handler that tells the test it ran. It is an
// engine server in the test process, on loopback.

import (
	"context"
	"encoding/json"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/petrel-rpc/petrel/engine"
)

// startEngine runs an engine server with handlers on 127.0.0.1:0 and
// returns its address; it is closed at cleanup.
func startEngine(t *testing.T, handlers map[string]engine.Handler) string {
	t.Helper()
	srv, err := engine.Listen(engine.Config{
		Addr:          "127.0.0.1:0",
		Engine:        engine.Std,
		IgnoreSignals: true,
		Logger:        slog.New(slog.DiscardHandler),
		Handlers:      handlers,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	return srv.AddrString()
}

// answer returns a handler answering status and payload.
func answer(status uint16, payload string) engine.Handler {
	return func(context.Context, *engine.Request) (uint16, []byte, error) {
		return status, []byte(payload), nil
	}
}

// handlersJSON is petrel.handlers' answer for the introspection tests.
const handlersJSON = `[{"name":"petrel.health","nonBlocking":true,"timeout":"","maxPayload":0,"maxConcurrent":0},` +
	`{"name":"echo","nonBlocking":false,"timeout":"1s","maxPayload":1024,"maxConcurrent":8}]`

// Until the engine has introspection built in (Config.Introspection), the
// built-in requests are stood in for by handlers of the same names
// answering in the same formats.
func TestIntrospection(t *testing.T) {
	needBinaries(t)
	stats := `{"OpenConns":1,"Requests":7,"ByStatus":{"200":7}}`
	addr := startEngine(t, map[string]engine.Handler{
		"petrel.handlers": answer(200, handlersJSON),
		"petrel.health":   answer(200, "ok"),
		"petrel.stats":    answer(200, stats),
	})
	table := "NAME           NON-BLOCKING  TIMEOUT  MAX-PAYLOAD  MAX-CONCURRENT\n" +
		"echo           no            1s       1024         8\n" +
		"petrel.health  yes           -        -            -\n"
	petrel(t, "", "-addr", addr, "list").want(t, 0, table, empty)
	petrel(t, "", "-addr", addr, "health").want(t, 0, "ok\n", empty)
	r := petrel(t, "", "-addr", addr, "stats")
	var got, want any
	if r.code != 0 || !strings.Contains(r.stdout, "\n  \"OpenConns\": 1,\n") ||
		json.Unmarshal([]byte(r.stdout), &got) != nil || json.Unmarshal([]byte(stats), &want) != nil ||
		!jsonEqual(got, want) {
		t.Fatalf("stats: %+v", r)
	}
	petrel(t, "", "-addr", addr, "-v", "health").
		want(t, 0, "ok\n", regexp.MustCompile(`^petrel: status 200 success, seq 2, request "petrel.health", protocol \d, round trip `))
	petrel(t, "", "-addr", addr, "list", "extra").want(t, 2, "", oneErrLine)

	// Not the JSON expected: printed as it came.
	odd := startEngine(t, map[string]engine.Handler{
		"petrel.handlers": answer(200, `{"handlers":"elsewhere"}`),
		"petrel.stats":    answer(200, "not json"),
		"petrel.health":   answer(503, "draining"),
	})
	petrel(t, "", "-addr", odd, "list").want(t, 0, `{"handlers":"elsewhere"}`, empty)
	petrel(t, "", "-addr", odd, "stats").want(t, 0, "not json", empty)
	// Draining: the status, exit 1.
	petrel(t, "", "-addr", odd, "health").want(t, 1, "", regexp.MustCompile(`^status 503: draining\n$`))

	// Introspection off: 400, said plainly.
	off := startServer(t)
	off400 := regexp.MustCompile(`^petrel: server has introspection off \(start it with -introspection\)\n$`)
	for _, cmd := range []string{"list", "health", "stats"} {
		petrel(t, "", "-addr", off, cmd).want(t, 1, "", off400)
	}
}

func jsonEqual(a, b any) bool {
	x, _ := json.Marshal(a)
	y, _ := json.Marshal(b)
	return string(x) == string(y)
}

// benchLine returns the value after label in bench's report.
func benchLine(t *testing.T, r result, label string) string {
	t.Helper()
	for _, l := range strings.Split(r.stdout, "\n") {
		if v, ok := strings.CutPrefix(l, label+":"); ok {
			return strings.TrimSpace(v)
		}
	}
	t.Fatalf("no %q line in %q", label, r.stdout)
	return ""
}

func TestBench(t *testing.T) {
	addr := startServer(t)
	r := petrel(t, "", "-addr", addr, "bench", "-c", "4", "-n", "200", "echo", "hello")
	if r.code != 0 || r.stderr != "" ||
		!strings.HasPrefix(r.stdout, `petrel bench: "echo", 5-byte payload, 4 connections, protocol `) ||
		!strings.HasPrefix(benchLine(t, r, "requests"), "200 in ") ||
		benchLine(t, r, "statuses") != "200: 200" || benchLine(t, r, "errors") != "none" ||
		!regexp.MustCompile(`^[0-9.]+ requests/s$`).MatchString(benchLine(t, r, "rate")) ||
		!regexp.MustCompile(`^p50 \S+, p90 \S+, p99 \S+, max \S+$`).MatchString(benchLine(t, r, "latency")) {
		t.Fatalf("bench -n: %+v", r)
	}
	t.Logf("\n%s", r.stdout)

	// For a duration, with random bytes; payload from stdin.
	r = petrel(t, "", "-addr", addr, "bench", "-c", "2", "-d", "300ms", "-size", "1000", "echo")
	if r.code != 0 || !strings.Contains(r.stdout, "1000-byte payload, 2 connections") || benchLine(t, r, "errors") != "none" {
		t.Fatalf("bench -d: %+v", r)
	}
	r = petrel(t, "from stdin", "-addr", addr, "bench", "-n", "20", "echo", "-")
	if r.code != 0 || !strings.Contains(r.stdout, "10-byte payload, 10 connections") || benchLine(t, r, "statuses") != "200: 20" {
		t.Fatalf("bench, payload on stdin: %+v", r)
	}
	// Fewer requests than connections: one connection per request.
	r = petrel(t, "", "-addr", addr, "bench", "-n", "3", "echo")
	if r.code != 0 || !strings.Contains(r.stdout, "3 connections") {
		t.Fatalf("bench -n 3: %+v", r)
	}

	// Statuses other than 2xx, and errors by kind: exit 1.
	r = petrel(t, "", "-addr", addr, "bench", "-n", "50", "fail")
	if r.code != 1 || benchLine(t, r, "statuses") != "500: 50" || benchLine(t, r, "errors") != "none" {
		t.Fatalf("bench fail: %+v", r)
	}
	r = petrel(t, "", "-addr", addr, "-timeout", "100ms", "bench", "-c", "2", "-n", "4", "sleep", "10s")
	if r.code != 1 || benchLine(t, r, "statuses") != "none" ||
		!strings.HasPrefix(benchLine(t, r, "errors"), "4 timeout (petrel: call \"sleep\": ") {
		t.Fatalf("bench timeouts: %+v", r)
	}

	// Nothing to dial: exit 3, one line.
	petrel(t, "", "-addr", "unix:///nonexistent/s", "bench", "echo").want(t, 3, "", oneErrLine)

	// Usage mistakes.
	for _, args := range [][]string{
		{"-n", "5", "-d", "1s", "echo"},
		{"-c", "0", "echo"},
		{"-c", "1001", "echo"},
		{"-n", "0", "echo"},
		{"-d", "-1s", "echo"},
		{"-size", "3", "echo", "x"},
		{"-size", "-1", "echo"},
		{},
		{"echo", "a", "b"},
	} {
		petrel(t, "", append([]string{"-addr", addr, "bench"}, args...)...).want(t, 2, "", oneErrLine)
	}
	if r := petrel(t, "", "-addr", addr, "bench", "-bogus", "echo"); r.code != 2 {
		t.Fatalf("unknown bench flag: %+v", r)
	}
}

// An echo whose answer differs from the payload is an error.
func TestBenchEchoMismatch(t *testing.T) {
	needBinaries(t)
	addr := startEngine(t, map[string]engine.Handler{
		"echo": func(_ context.Context, r *engine.Request) (uint16, []byte, error) {
			return 200, slices.Concat(r.Payload, []byte("!")), nil
		},
	})
	r := petrel(t, "", "-addr", addr, "bench", "-c", "3", "-n", "30", "echo", "abc")
	if r.code != 1 || benchLine(t, r, "statuses") != "none" ||
		benchLine(t, r, "errors") != "30 echo mismatch (echo answer differs from the payload sent: 4 bytes, want 3)" {
		t.Fatalf("mismatch: %+v", r)
	}
}

// SIGINT stops a run and prints what was measured.
func TestBenchInterrupt(t *testing.T) {
	needBinaries(t)
	const enough = 200 // calls the server has seen (4 may still be on their way back)
	var calls atomic.Int64
	ran := make(chan struct{})
	addr := startEngine(t, map[string]engine.Handler{
		"count": func(context.Context, *engine.Request) (uint16, []byte, error) {
			if calls.Add(1) == enough {
				close(ran)
			}
			return 200, nil, nil
		},
	})
	cmd := exec.Command(filepath.Join(binDir, "petrel"), "-addr", addr, "bench", "-c", "4", "-d", "10m", "count")
	cmd.Env = append(os.Environ(), "PETREL_ADDR=", "PETREL_HMAC_KEY=")
	var stdout, stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	select {
	case <-ran:
	case err := <-exited:
		t.Fatalf("bench exited early: %v\n%s%s", err, stdout.String(), stderr.String())
	case <-time.After(30 * time.Second):
		cmd.Process.Kill()
		<-exited
		t.Fatal("no calls within 30s")
	}
	cmd.Process.Signal(os.Interrupt)
	select {
	case err := <-exited:
		if err != nil {
			t.Fatalf("exit: %v\n%s%s", err, stdout.String(), stderr.String())
		}
	case <-time.After(30 * time.Second):
		cmd.Process.Kill()
		<-exited
		t.Fatal("bench did not stop on SIGINT")
	}
	r := result{0, stdout.String(), stderr.String()}
	n, err := strconv.Atoi(strings.TrimPrefix(benchLine(t, r, "statuses"), "200: "))
	if err != nil || n < enough-4 || !strings.HasSuffix(benchLine(t, r, "requests"), "(interrupted)") ||
		benchLine(t, r, "errors") != "none" || r.stderr != "" {
		t.Fatalf("interrupted bench: %+v", r)
	}
	t.Logf("\n%s", r.stdout)
}
