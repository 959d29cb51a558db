// Package bench is Petrel's benchmark suite: it runs each server under test
// in a child process, drives it from this process with synchronous clients
// over loopback TCP or a Unix socket, verifies every answer, and reports
// throughput, latency percentiles, server CPU per request, server memory and
// allocations, each also as a ratio to the stdlib engine measured in the same
// run.
//
// The command bench/cmd/petrel-bench wraps [Run]; the same binary plays the
// server role ([ServeMain]) when started with -serve.
//
// # Rounds
//
// A load scenario starts every system's server and opens all its
// connections first, and keeps them for the whole scenario (when the
// open-file limit cannot hold them all at once, each slice starts its own,
// and a note says so). Then each of
// Scenario.Repeats rounds measures every system once, side by side: a
// warm-up, then a slice of Scenario.Duration, in an order rotated from round
// to round. A figure is the median over the rounds with half their min–max
// range as its spread; a ratio to the baseline is the median of each
// round's ratio, so a drift of the machine during the run cancels out of
// it. [Compare] checks two runs against each other figure by figure: they
// agree on a figure when its min–max ranges overlap. The idle scenario
// starts a fresh server per round instead, so that the memory it measures
// is the connections' alone.
//
// # The server role and its control channel
//
// The parent starts the child as `EXE -serve SYSTEM -addr ADDR [-hmac KEY]
// [-tls-cert FILE -tls-key FILE] [-slow DURATION]`. The child listens, prints
// one line "listening on ADDR" to stdout, then reads commands from stdin, one
// per line:
//
//	stats       the child answers "stats {JSON}" on stdout (see [ServerStats])
//	stats free  the same after runtime/debug.FreeOSMemory, for memory figures
//
// The child exits when stdin closes or on SIGTERM, so a parent that dies
// never leaves a server behind.
//
// # Paced load and the load role
//
// A paced scenario (Scenario.Rate; the suite's c19k-1rps holds 19,000
// connections, each sending one 64-byte echo a second) runs its load in
// processes of its own, `EXE -load -addr ADDR -conns N -first G -total T
// -rate R …` ([LoadMain]), at most 10,000 connections each, so that one
// server can hold nearly its open-file limit of connections. They spread
// over loopback source addresses 127.0.0.2, 127.0.0.3, … (5,000 each,
// fresh ones for every session), each with its own ephemeral ports.
// Connection g of T sends at offset g/T of every period, so the load is
// even, not bursts; latency counts from the scheduled send time. A load
// process prints "connected N SECONDS", then runs a slice for each "slice
// T0 WARMUP DURATION" line and answers "result {JSON}": requests sent and
// verified in the measured window, failures (a request unanswered within
// 5 s or failed; its connection is closed), its own CPU, and the latency
// histogram. A wrong answer still fails the run, and a disturbed slice is
// flagged but not measured again (the slices are long). The table gives sent,
// verified, failures, p50/p99/max latency, server CPU, RSS and goroutines.
//
// # Protocol versions and mixed handlers
//
// The load client speaks Petrel protocol version 0, or version 1 in
// scenarios with Scenario.Version 1 (hmac-v1-c64-64B): a PROTOCHECK with
// 0x01 and a fresh nonce, the session key from both nonces, a 32-byte tag
// over each whole frame, seq one more per request. A server that answers
// 497 fails the scenario with [ErrNoV1]; systems without version 1 (the
// floors, the peers) skip it. The mixed scenario (mixed-c1-sleep50ms)
// measures echo at one connection while 32 others call a 50 ms "sleep"
// back to back, and gives each system's echo latency also as a ratio to
// reactor-inline's (Scenario.Versus) and the sleeps' throughput beside
// their bound (32 / 50 ms); reactor-inline, whose handlers must not block,
// runs the echo alone.
//
// # Figures
//
// Server CPU per request is the child's getrusage (user+system) over the
// measured window divided by the verified answers in it; allocations per
// request likewise from runtime.MemStats.Mallocs; RSS is VmRSS. The idle
// scenario reads RSS and heap after runtime/debug.FreeOSMemory, before and
// after opening its connections. During every load point the parent also
// reads /proc/stat: CPU that neither process used (other programs, or the
// hypervisor's steal) is reported; a slice where it exceeded a quarter of a
// CPU is measured again (up to twice), and scenarios where it stayed above
// are flagged as disturbed.
package bench
