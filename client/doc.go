// Package client is a blocking Petrel client: [Dial] a server, [Client.Call]
// it, [Client.Close] it, or share a few connections between many goroutines
// with a [Pool].
//
// A [Client] is one synchronous connection, as the protocol defines it: one
// request in flight at a time. Calls from several goroutines are safe; they
// take turns, each waiting for its turn no longer than its context allows.
// For parallelism use a [Pool], which keeps up to N connections, dials them
// lazily, replaces the broken ones and spreads them over several servers.
//
// Dialing runs the protocol check (PROTOCHECK), which settles the protocol
// version ([Config.Protocol], [Client.Version]). By default the client
// offers version 1: with an HMAC key, every frame then carries a tag under
// a key derived for the session from both ends' nonces, covering the
// frame's direction, status, sequence number, request text and payload,
// and every answer's tag, sequence number and request text are checked.
// A classic server, which speaks only version 0, costs a second connection
// on which the client speaks version 0, except that a client with a key
// refuses that downgrade unless [Config.AllowV0] is set. A server that does
// not know PROTOCHECK gives an error matching [ErrProtocolCheck]; one with
// which no version can be agreed, a *[VersionError].
//
// An answer with status 400 or more comes back as a *[codec.StatusError]
// (status, request and reason), to be matched with errors.As; the
// [Response] is returned beside it. Version-1 sessions may get two statuses
// that leave the connection open: 503 ([codec.StatusBusy]: the request did
// not run, retrying is safe) and 504 ([codec.StatusHandlerTimeout]: the
// handler overran its timeout and may have run). After an answer whose
// status closes the connection (402, 497, 498, 499, 501, 502, 599; see
// [codec.Status.ClosesConn]), a network error, a malformed or unverifiable
// answer, a version-1 session out of sequence numbers ([ErrSeqExhausted]),
// or a call cut short by its context, the client is closed: [Client.Err]
// says why, and later calls fail with an error matching [ErrClosed].
//
// In steady state a call allocates nothing but the payload it returns, and
// [Client.CallInto] reads the answer into the caller's buffer so that it
// allocates nothing at all, on either protocol version, keyed or not. (A
// call whose context can be cancelled costs the few allocations of
// [context.AfterFunc].)
//
// The package depends only on the standard library and
// [github.com/petrel-rpc/petrel/codec].
package client
