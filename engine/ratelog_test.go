package engine_test

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/petrel-rpc/petrel/codec"
	"github.com/petrel-rpc/petrel/engine"
)

// countingWriter counts the bytes a slog handler writes and keeps the
// lines.
type countingWriter struct {
	mu    sync.Mutex // guards the fields below
	n     int
	lines []string
}

func (w *countingWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.n += len(p)
	w.lines = append(w.lines, string(bytes.TrimSpace(p)))
	return len(p), nil
}

func (w *countingWriter) stats() (int, []string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.n, append([]string(nil), w.lines...)
}

// A flood of panicking requests logs a few lines, one stack among them,
// not a line (and a stack) per request (#14.6: 10 s of panics must produce
// well under 10 MB). The loop is bounded and runs well within one log
// interval (10 s); lines from a second window are allowed for slow runs.
func TestPanicLogVolume(t *testing.T) {
	forEach(t, func(t *testing.T, e env) {
		w := &countingWriter{}
		srv := e.listen(t, engine.Config{Logger: slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelInfo}))})
		c := dial(t, srv)
		const panics = 3000
		payload := bytes.Repeat([]byte("p"), 64)
		start := time.Now()
		for range panics / 100 {
			// Pipelined in batches of 100.
			for range 100 {
				c.send("panic", payload)
			}
			for range 100 {
				if f := c.recv(); f.Status != codec.StatusHandlerError {
					t.Fatalf("status %d", f.Status)
				}
			}
		}
		c.expect("fail", nil, codec.StatusHandlerError, nil)
		windows := 1 + int(time.Since(start)/(10*time.Second))
		n, lines := w.stats()
		var panicLines, stacks int
		for _, l := range lines {
			if strings.Contains(l, "handler panicked") {
				panicLines++
				if strings.Contains(l, "stack=") {
					stacks++
				}
			}
		}
		if panicLines == 0 || panicLines > 5*windows || stacks > windows {
			t.Errorf("%d panics logged %d lines, %d with a stack, over %d window(s)", panics, panicLines, stacks, windows)
		}
		if limit := 64 << 10 * windows; n > limit {
			t.Errorf("%d panics wrote %d bytes of log, want under %d", panics, n, limit)
		}
		t.Logf("%d panics: %d bytes of log, %d lines", panics, n, len(lines))
	})
}

// A line let through after some were dropped says how many. Not
// parallel: it lowers the limiter's interval for the servers it starts;
// waiting out that interval is the only time-based step.
func TestLogRateSuppressed(t *testing.T) {
	const interval = 200 * time.Millisecond
	t.Cleanup(engine.SetLogRate(interval, 2))
	forEach(t, func(t *testing.T, e env) {
		rec := &attrRecorder{}
		srv := e.listen(t, engine.Config{Logger: slog.New(rec)})
		c := dial(t, srv)
		const first = 200
		for range first {
			c.expect("fail", nil, codec.StatusHandlerError, nil)
		}
		time.Sleep(interval) // let the window end
		c.expect("fail", nil, codec.StatusHandlerError, nil)
		lines, suppressed := rec.count("petrel: handler error")
		if lines+suppressed != first+1 {
			t.Errorf("%d lines and %d suppressed, want %d in all", lines, suppressed, first+1)
		}
		if suppressed == 0 || lines > first/2 {
			t.Errorf("%d lines, %d suppressed: not limited", lines, suppressed)
		}
	})
}

// attrRecorder records each record's message and its suppressed count.
type attrRecorder struct {
	mu   sync.Mutex // guards recs
	recs []struct {
		msg        string
		suppressed int64
	}
}

func (r *attrRecorder) Enabled(context.Context, slog.Level) bool { return true }
func (r *attrRecorder) WithAttrs([]slog.Attr) slog.Handler       { return r }
func (r *attrRecorder) WithGroup(string) slog.Handler            { return r }
func (r *attrRecorder) Handle(_ context.Context, rec slog.Record) error {
	var sup int64
	rec.Attrs(func(a slog.Attr) bool {
		if a.Key == "suppressed" {
			sup = a.Value.Int64()
		}
		return true
	})
	r.mu.Lock()
	r.recs = append(r.recs, struct {
		msg        string
		suppressed int64
	}{rec.Message, sup})
	r.mu.Unlock()
	return nil
}

// count returns the lines with message msg and the sum of their
// suppressed counts.
func (r *attrRecorder) count(msg string) (lines, suppressed int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, x := range r.recs {
		if x.msg == msg {
			lines++
			suppressed += int(x.suppressed)
		}
	}
	return lines, suppressed
}
