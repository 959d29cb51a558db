package engine

import "time"

// Test hooks for the external tests. Each returns a function restoring the
// previous value; call it from t.Cleanup of a test that is not parallel,
// so no server reads the value while it changes (servers read them when
// they start, or per negotiation).

// SetLogRate sets the log rate limit of servers started after it.
func SetLogRate(interval time.Duration, burst int) (restore func()) {
	oi, ob := logInterval, logBurst
	logInterval, logBurst = interval, burst
	return func() { logInterval, logBurst = oi, ob }
}

// SetRandRead replaces the source of the servers' PROTOCHECK nonces.
func SetRandRead(f func([]byte) (int, error)) (restore func()) {
	old := randRead
	randRead = f
	return func() { randRead = old }
}

// SetAfterAnswerWritten makes the reactor's workers call f after writing
// an answer whole, before they give the connection back.
func SetAfterAnswerWritten(f func()) (restore func()) { return setHook(&afterAnswerWritten, f) }

// SetAfterOrphaned makes the reactor's loops call f when a half-closed
// connection is given a duplicate descriptor to finish its answers on.
func SetAfterOrphaned(f func()) (restore func()) { return setHook(&afterOrphaned, f) }

// SetBeforeAsyncAnswer makes the reactor's workers call f before they hand
// (the rest of) a plain answer to gnet.
func SetBeforeAsyncAnswer(f func()) (restore func()) { return setHook(&beforeAsyncAnswer, f) }

// setHook sets the test hook *p to f and returns what restores it.
func setHook(p *func(), f func()) (restore func()) {
	old := *p
	*p = f
	return func() { *p = old }
}
