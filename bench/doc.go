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
