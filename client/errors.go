package client

import "errors"

// Sentinel errors. Wire statuses of 400 and above are reported as a
// *[codec.StatusError]; payloads over a limit as a *[codec.LimitError]
// (matching [codec.ErrPayloadTooLarge]); request text over 255 bytes as
// [codec.ErrRequestTooLong]; an answer whose HMAC does not verify matches
// [codec.ErrBadMAC].
var (
	// ErrClosed: the client, or the pool, is closed, either by Close or
	// because the connection broke. When the connection broke, the error
	// wraps both ErrClosed and the cause.
	ErrClosed = errors.New("petrel: client closed")
	// ErrProtocolCheck: the server failed the protocol check run when
	// dialing. It wraps a *[codec.StatusError]: status 400 when the server
	// does not know PROTOCHECK (not a Petrel server, or a very old one),
	// 497 when it speaks another protocol version.
	ErrProtocolCheck = errors.New("petrel: protocol check failed")
	// ErrBadAnswer: the server's answer does not belong to the request (its
	// sequence number differs) or is otherwise malformed. The client is
	// closed.
	ErrBadAnswer = errors.New("petrel: malformed answer")
	// ErrConfig wraps every configuration error from [Dial], [New] and
	// [NewPool].
	ErrConfig = errors.New("petrel: invalid client config")
)
