package engine

import (
	"context"
	"log/slog"
	"sync"
	"time"
)

// The log rate limit: at most logBurst lines per key per logInterval. They
// are variables so that tests can lower them; a server reads them once,
// when it starts.
var (
	logInterval = 10 * time.Second
	logBurst    = 5
)

// maxLogKeys bounds the keys a limiter tracks; lines for further keys share
// one overflow key, so a flood of distinct keys cannot grow the map.
const maxLogKeys = 4096

// overflowLogKey is the key every key beyond maxLogKeys shares.
const overflowLogKey = "\x00overflow"

// rateLimiter decides which log lines get through: per key, at most burst
// lines in each interval (a fixed window starting at the key's first line
// after the previous window ended), counting the lines it drops so that
// the next line let through can say how many.
type rateLimiter struct {
	interval time.Duration
	burst    int

	mu   sync.Mutex           // guards keys
	keys map[string]*logState // by key
}

// logState is one key's current window.
type logState struct {
	start      time.Time // when the window began
	n          int       // lines let through in the window
	suppressed int       // lines dropped since the last one let through
}

func newRateLimiter(interval time.Duration, burst int) *rateLimiter {
	return &rateLimiter{interval: interval, burst: max(burst, 1), keys: map[string]*logState{}}
}

// take reports whether a line for key may be logged at now. When it may,
// first says it is the first line of its window, and suppressed how many
// lines for key were dropped since the last one let through (reset by this
// call). It allocates only for a key it has not seen before.
func (l *rateLimiter) take(key string, now time.Time) (ok, first bool, suppressed int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	st := l.keys[key]
	if st == nil {
		if len(l.keys) >= maxLogKeys {
			key = overflowLogKey
			st = l.keys[key]
		}
		if st == nil {
			st = &logState{start: now}
			l.keys[key] = st
		}
	}
	if now.Sub(st.start) >= l.interval {
		st.start, st.n = now, 0
	}
	if st.n >= l.burst {
		st.suppressed++
		return false, false, 0
	}
	st.n++
	suppressed, st.suppressed = st.suppressed, 0
	return true, st.n == 1, suppressed
}

// logOn reports whether the server's logger takes lines at level. Callers
// whose arguments cost something to build (boxing into any allocates) check
// it first.
func (s *Server) logOn(level slog.Level) bool {
	return s.log.Enabled(context.Background(), level)
}

// logRated logs msg with args at level, unless level is disabled or key has
// had its share of lines in the current interval (see logInterval and
// logBurst). The first line let through after some were dropped carries a
// suppressed=N attribute. With the level disabled it does nothing but the
// Enabled check and allocates nothing (the caller's args are its own:
// constant strings and small integers box for free; guard costlier ones
// with logOn). Keys in use: "panic:"+handler name, "error:"+handler name,
// "status:"+handler name, "refusal", "timeout", "disconnect", "handshake".
// Safe for concurrent use.
func (s *Server) logRated(key string, level slog.Level, msg string, args ...any) {
	if !s.logOn(level) {
		return
	}
	ok, _, suppressed := s.disp.rate.take(key, time.Now())
	if !ok {
		return
	}
	if suppressed > 0 {
		args = append(args[:len(args):len(args)], "suppressed", suppressed)
	}
	s.log.Log(context.Background(), level, msg, args...)
}
