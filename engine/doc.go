// Package engine embeds Petrel servers in a program.
//
// [Listen] starts a server from a [Config] and returns once it listens.
// Handlers are registered by request name (in Config.Handlers or with
// [Server.Handle] while serving) and wrapped by Config.Middleware. A server
// stops with [Server.Shutdown] (graceful: every request already read is
// answered), [Server.Close] (at once), a listener failure, or SIGINT/SIGTERM
// unless Config.IgnoreSignals is set; [Server.Wait] and [Server.Err] tell
// when and why.
//
// # Engines
//
// Two transports sit behind the same API and share the codec and the
// dispatch code, so the only difference between them is how bytes move:
//
//   - [Reactor] (the default): gnet event loops, one per physical core the
//     process can use. No goroutine per connection; handlers run on a
//     bounded ants worker pool, or on the loop itself with Config.Inline.
//   - [Std]: a goroutine per connection on package net, with a reused read
//     buffer and vectored writes. The baseline.
//
// # Life of a request on the reactor
//
//  1. Bytes in. gnet reads the socket into its per-loop buffer and calls
//     OnTraffic; the connection's bytes are gnet's (valid until Discard, on
//     the loop goroutine only). Cost: one read syscall per event.
//  2. Decode. codec.Parse decodes the frame in place from Peek: no copy, no
//     allocation. A header declaring a payload over the limit is answered
//     402 at once. A frame that has not fully arrived is copied, as it
//     arrives, into a pooled buffer the connection owns (bytebufferpool), so
//     each byte is copied once rather than re-assembled by gnet per read;
//     the timing wheel's read deadline is armed.
//  3. Dispatch. Inline: the handler runs on the loop with the request and
//     payload aliasing gnet's buffer; zero copies. Pool mode: the frame is
//     copied once into a pooled buffer now owned by the connection, the
//     connection is marked busy (frames behind it stay in gnet's buffer,
//     which keeps each connection synchronous), and a pooled exchange
//     (Request, header and MAC scratch, HMAC state) is handed to an ants
//     worker. When the pool is full the connection joins an overflow queue
//     that finishing workers drain; nothing is dropped and memory stays
//     bounded by one request per connection.
//  4. Write. The answer is framed as writev slices: an 11-byte header and
//     MAC in the exchange, the request text and payload aliasing the
//     request (an echo copies nothing). Inline, the loop writes it with
//     gnet's Writev. In pool mode the worker writes it straight to the
//     socket with writev(2) under the connection's write mutex; OnClose
//     takes the same mutex before gnet closes the descriptor, so a worker
//     can never write to a descriptor number the kernel has handed to
//     another client, and the event loop stays the only closer. Only if the
//     kernel does not take the whole answer does the rest go through
//     AsyncWritev (one loop wake). This saves the two cross-thread wakes a
//     worker-pool reactor normally pays per request.
//  5. Next frame. The worker returns the buffers to their pools and marks
//     the connection idle. If frames arrived meanwhile (OnTraffic saw the
//     busy connection and flagged it) the worker wakes the loop with
//     Conn.Wake, which decodes the next frame; otherwise the next request's
//     arrival does.
//
// An idle reactor connection holds gnet's connection state and a small
// struct (about 0.9 KB in all at 10,000 connections): no buffer, no
// goroutine, no timer.
//
// # Timeouts
//
// gnet has no deadlines. Each connection stores its deadline in an atomic
// (an O(1) store per event, no lock); a hashed timing wheel swept from
// OnTick visits a connection only when its slot comes round, then closes it
// or re-files it under its current deadline.
//
// # TLS on the reactor
//
// crypto/tls wants a blocking net.Conn. Each TLS connection gets a pipe:
// the loop feeds it ciphertext, and its writes queue ciphertext that only
// the loop writes to the socket, in order. The handshake cannot be driven
// without blocking (crypto/tls keeps any handshake error for good), so it
// runs on a goroutine started when the first bytes arrive, bounded by
// Config.MaxHandshakes and Config.HandshakeTimeout. After it, the pipe
// returns a temporary net.Error instead of blocking, which crypto/tls does
// not make sticky once the handshake is done, and the loop decrypts records
// itself: no goroutine per established connection remains. Ciphertext
// from any goroutine (a worker's answer, the handshake, an alert) goes
// straight to the socket under the connection's write mutex when nothing is
// queued ahead of it; otherwise it joins the ordered queue, which the loop
// flushes after one coalesced wake. Record order is what crypto/tls's write
// lock fixes, so it is kept either way.
//
// # Measured costs
//
// Per request, on the server process alone, counted by perf stat while the
// suite's load generator shares the two vCPUs (bench/perfstat.sh SYSTEM
// CONNS PAYLOAD; 64 B echo unless noted; one run, commit 88db166):
//
//	                 CPU µs  ctx switches  futex  epoll_wait  read  write
//	1 conn     pool    54.0          2.72   1.61        2.28  0.99   1.14
//	           inline  30.6          1.67   1.21        1.65  1.00   1.00
//	           std     21.5          1.42   0.25        1.15  1.57   1.00
//	           gnet    25.2          1.46   0.92        1.53  0.99   0.99
//	1024 conns pool    20.0          0.14   0.03        0.14  0.97   0.97
//	           inline  17.2          0.16   0.03        0.10  0.95   0.95
//	           std     19.2          0.08   0.01        0.04  1.91   0.96
//	           gnet    16.7          0.20   0.04        0.24  0.95   0.95
//	16 KiB×16  pool    30.5          0.44   0.12        0.64  1.00   1.00
//	           inline  21.7          0.32   0.07        0.49  0.98   0.98
//	           std     23.6          0.30   0.11        0.33  1.96   0.99
//
// (gnet is the bench's bare gnet floor; std is the stdlib engine.) What
// they show:
//
//   - Pool mode at low concurrency pays for the hand-off: one more thread
//     woken and put to sleep per request (about one more context switch and
//     0.4 more futex calls than inline), so it takes 1.8 times inline's CPU
//     per request and about twice the stdlib engine's latency. The worker
//     already writes the answer itself, so no second wake of the loop is
//     left; the wake of the worker is what remains. An execution trace
//     (runtime/trace, one connection, 3,500 requests) shows where it goes:
//     the worker starts a median 10 µs (p90 39 µs) after the loop hands it
//     the request, on the loop's own thread 94% of the time, once the loop
//     yields; most of that wait (7.6 µs) is the loop issuing a futex wake
//     to an idle thread, which Go's scheduler does whenever a goroutine
//     becomes runnable while a CPU is idle (an inter-processor interrupt on
//     a VM), before the loop can yield. Removing it needs the
//     thread that read a request to run the handler and hand the poller to
//     another thread only if the handler blocks (leader/follower), which
//     gnet's event loop, a goroutine that owns its connections and blocks
//     in epoll_wait, does not offer.
//   - Inline, and the bare gnet floor alike, sit at 1.1–1.25 times the
//     stdlib engine's latency at one connection: when gnet's loop finds no
//     more events it calls runtime.Gosched before blocking, and Gosched
//     wakes an idle thread (about one futex call per request, against 0.25
//     for the stdlib engine, whose goroutines park in the runtime's own
//     poller). A copy of gnet without that Gosched brought the futex calls
//     down to 0.01 per request and CPU by a tenth, but not the latency (one
//     run: p50 39.8 µs against 36.3 µs), so it is not the whole gap.
//   - At 1,024 connections the kernel's TCP work dominates: 10–11 µs of
//     the 15–17 µs of CPU per request are system time in every engine (the
//     suite's "sys µs" column). The reactor saves the stdlib engine's
//     second read (the one that returns EAGAIN), 2.1 system calls per
//     request against 3.0, and a fifth of the user time, which puts its CPU
//     per request at 0.9 times the stdlib engine's at best, not 0.85; with
//     the load generator on the same two vCPUs, throughput follows CPU per
//     request. Going lower needs fewer system calls per request than one
//     read and one write, for instance io_uring, which gnet does not use.
//   - 16 KiB: inline runs at the gnet floor, 0.84–0.90 times the stdlib
//     engine's throughput in the suite. The loops sleep and wake more often
//     than Go's scheduler, which spins briefly before it parks a thread
//     (0.39 context switches per request against 0.19; task switching is
//     19% of the reactor's perf record samples against 12%); one loop
//     nearly halves the switches (see Config.EventLoops). Pool mode adds
//     the one copy of the frame (the loop's buffer is only valid on the
//     loop) and the hand-off.
//
// Decoding, dispatch and framing are a few percent of the CPU in a pprof
// profile; the per-request path allocates nothing (engine/allocs_test.go).
//
// # Buffers handed to handlers
//
// A handler's [Request] and its payload are valid only during the call.
// The payload it returns may alias the request's; the server is done with
// both once the answer is written.
package engine
