package client

import (
	"errors"
	"fmt"

	"github.com/petrel-rpc/petrel/codec"
)

// Sentinel errors. Wire statuses of 400 and above are reported as a
// *[codec.StatusError]; payloads over a limit as a *[codec.LimitError]
// (matching [codec.ErrPayloadTooLarge]); request text over 255 bytes as
// [codec.ErrRequestTooLong]; an answer whose MAC or tag does not verify
// matches [codec.ErrBadMAC]; a failed version negotiation is a
// *[VersionError].
var (
	// ErrClosed: the client, or the pool, is closed, either by Close or
	// because the connection broke. When the connection broke, the error
	// wraps both ErrClosed and the cause.
	ErrClosed = errors.New("petrel: client closed")
	// ErrProtocolCheck: the server failed the protocol check run when
	// dialing. It wraps a *[codec.StatusError]: status 400 when the server
	// does not know PROTOCHECK (not a Petrel server, or a very old one),
	// 497 when it speaks another protocol version (then the error is a
	// *[VersionError]).
	ErrProtocolCheck = errors.New("petrel: protocol check failed")
	// ErrDowngrade: a client with an HMAC key offered version 1 to a
	// server that speaks only version 0, and refused to fall back since
	// [Config.AllowV0] is not set. A *[VersionError] matches it.
	ErrDowngrade = errors.New("petrel: refused to downgrade a keyed session to protocol version 0")
	// ErrBadAnswer: the server's answer does not belong to the request (its
	// sequence number differs or, on a version-1 session, its request
	// text) or is otherwise malformed. The client is closed.
	ErrBadAnswer = errors.New("petrel: malformed answer")
	// ErrSeqExhausted: a version-1 session has used its last sequence
	// number (2^32−1), after which a server accepts nothing. The call that
	// gets it was not sent, and the client is closed: dial a new one. A
	// [Pool] does so itself and sends the call on the new connection.
	ErrSeqExhausted = errors.New("petrel: sequence numbers of the session used up")
	// ErrConfig wraps every configuration error from [Dial], [New] and
	// [NewPool].
	ErrConfig = errors.New("petrel: invalid client config")
)

// VersionError reports a protocol check in which the client and the server
// found no version to agree on: the server answered 497 with the version
// it speaks. It matches [ErrProtocolCheck] with errors.Is, and
// [ErrDowngrade] too when Downgrade is set; it unwraps to the server's
// answer, a *[codec.StatusError] with status 497.
type VersionError struct {
	Offered uint8 // the version the client offered
	Server  uint8 // the version the server answered with: the highest it speaks
	// Downgrade is set when the server speaks only version 0 and the
	// client refused it, having an HMAC key but not [Config.AllowV0].
	Downgrade bool
	Answer    *codec.StatusError // the 497 answer

	// fallback: under ProtocolAuto the client may dial again and speak
	// version 0 ([Dial] does; [New] cannot).
	fallback bool
}

// Error implements error.
func (e *VersionError) Error() string {
	switch {
	case e.Downgrade:
		return "petrel: protocol check failed: server speaks protocol version 0 only, and a client with an HMAC key requires version 1 " +
			"(set Config.AllowV0 to accept version 0, whose MAC covers the payload only)"
	case e.fallback:
		return "petrel: protocol check failed: server speaks protocol version 0 only, and a client made by New cannot dial again to speak it " +
			"(set Config.Protocol to Protocol0)"
	case e.Offered < e.Server:
		return fmt.Sprintf("petrel: protocol check failed: server requires protocol version %d, client speaks %d", e.Server, e.Offered)
	}
	return fmt.Sprintf("petrel: protocol check failed: server speaks protocol version %d, client speaks %d", e.Server, e.Offered)
}

// Is makes errors.Is(err, ErrProtocolCheck) true, and errors.Is(err,
// ErrDowngrade) when Downgrade is set.
func (e *VersionError) Is(target error) bool {
	return target == ErrProtocolCheck || (e.Downgrade && target == ErrDowngrade)
}

// Unwrap returns the server's 497 answer.
func (e *VersionError) Unwrap() error {
	if e.Answer == nil {
		return nil
	}
	return e.Answer
}
