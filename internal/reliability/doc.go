// Package reliability holds fault, load and bad-input tests that attack
// both server engines over real sockets: a live-server fuzz target,
// clients that disconnect at every stage, panicking and hanging handlers,
// connection floods, slowloris, pipelining clients that never read,
// connection churn, stalled TLS handshakes, and shutdown under load. It
// has no non-test code; see the _test.go files.
package reliability
