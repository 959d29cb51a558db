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
// hypervisor's steal) is reported, and scenarios where it exceeded a quarter
// of a CPU are flagged as disturbed.
package bench
