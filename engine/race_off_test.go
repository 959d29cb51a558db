//go:build !race

package engine_test

// raceEnabled reports whether the race detector is on (it slows TLS
// handshakes about tenfold, so load tests scale down under it).
const raceEnabled = false
