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
// Dialing runs the protocol check (PROTOCHECK): a server that does not know
// it, or speaks another protocol version, gives an error matching
// [ErrProtocolCheck]. An answer with status 400 or more comes back as a
// *[codec.StatusError] (status, request and reason), to be matched with
// errors.As; the [Response] is returned beside it. After an answer whose
// status closes the connection (402, 497, 498, 499, 501, 502, 599; see
// [codec.Status.ClosesConn]), a network error, a malformed or unverifiable
// answer, or a call cut short by its context, the client is closed:
// [Client.Err] says why, and later calls fail with an error matching
// [ErrClosed].
//
// In steady state a call allocates nothing but the payload it returns, and
// [Client.CallInto] reads the answer into the caller's buffer so that it
// allocates nothing at all. (A call whose context can be cancelled costs
// the few allocations of [context.AfterFunc].)
//
// The package depends only on the standard library and
// [github.com/petrel-rpc/petrel/codec].
package client
