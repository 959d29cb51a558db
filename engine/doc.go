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
// From a profile of one connection in pool mode on two vCPUs: the read,
// writev and epoll_wait system calls are about two thirds of the server's
// CPU; handing the request to a worker goroutine costs a futex wake and a
// futex sleep (about 14%), which is why pool mode's latency at low
// concurrency is about twice an inline handler's. Decoding, dispatch and
// framing are a few percent.
//
// # Buffers handed to handlers
//
// A handler's [Request] and its payload are valid only during the call.
// The payload it returns may alias the request's; the server is done with
// both once the answer is written.
package engine
