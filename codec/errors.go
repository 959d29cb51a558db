package codec

import (
	"errors"
	"fmt"
	"strconv"
)

// Sentinel errors. Each protocol violation maps to a wire status through
// [StatusOf].
var (
	// ErrPayloadTooLarge: a frame declares, or a caller tries to send, a
	// payload longer than the limit. Returned wrapped in a *[LimitError];
	// status 402.
	ErrPayloadTooLarge = errors.New("petrel: payload length over the limit")
	// ErrRequestTooLong: request text longer than 255 bytes cannot be
	// framed (the length field is one byte).
	ErrRequestTooLong = errors.New("petrel: request text longer than 255 bytes")
	// ErrBadMAC: a frame's HMAC does not match its payload; status 502.
	ErrBadMAC = errors.New("petrel: HMAC verification failed")
	// ErrShortBuffer: a destination buffer is too small for a header.
	ErrShortBuffer = errors.New("petrel: buffer too small for a frame header")
	// ErrBadProtoCheck: a PROTOCHECK payload is malformed (empty, a version-0
	// payload longer than 1 byte, a version-1 payload not 17 bytes long);
	// returned wrapped by [ParseProtoCheck]; status 497.
	ErrBadProtoCheck = errors.New("petrel: malformed PROTOCHECK payload")
)

// badProtoCheck returns an error wrapping ErrBadProtoCheck with a reason.
func badProtoCheck(reason string) error {
	return fmt.Errorf("%w: %s", ErrBadProtoCheck, reason)
}

// LimitError reports a payload length over a limit. It matches
// [ErrPayloadTooLarge] with errors.Is and maps to status 402.
type LimitError struct {
	Declared uint64 // the payload length declared or attempted, in bytes
	Limit    uint64 // the limit in force, in bytes
}

// Error implements error.
func (e *LimitError) Error() string {
	return "petrel: payload length " + e.Reason()
}

// Reason is the text carried in a 402 answer: "<declared> > <limit>", as the
// original Petrel sends it.
func (e *LimitError) Reason() string {
	return strconv.FormatUint(e.Declared, 10) + " > " + strconv.FormatUint(e.Limit, 10)
}

// Is makes errors.Is(err, ErrPayloadTooLarge) true.
func (e *LimitError) Is(target error) bool { return target == ErrPayloadTooLarge }

// Status returns 402.
func (e *LimitError) Status() Status { return StatusPayloadTooLarge }

// StatusError is a non-success answer from the other end: its status and the
// reason it carried (the answer's payload, which servers fill with a short
// text for library statuses). It is what clients return for statuses of 400
// and above; match it with errors.As.
type StatusError struct {
	Status  Status // the answer's status
	Request string // the request the answer was for
	Reason  string // the answer's payload as text, possibly empty
}

// Error implements error: "petrel: status N: reason".
func (e *StatusError) Error() string {
	r := e.Reason
	if r == "" {
		r = e.Status.Text()
	}
	return "petrel: status " + strconv.Itoa(int(e.Status)) + ": " + r
}

// StatusOf maps an error to the wire status that reports it: 402 for a
// payload over the limit, 502 for a bad MAC, 497 for a malformed PROTOCHECK,
// the status of a *StatusError, 200 for nil and 498 (read error / malformed
// frame) for anything else.
func StatusOf(err error) Status {
	if err == nil {
		return StatusOK
	}
	var se *StatusError
	switch {
	case errors.Is(err, ErrPayloadTooLarge):
		return StatusPayloadTooLarge
	case errors.Is(err, ErrBadMAC):
		return StatusBadMAC
	case errors.Is(err, ErrBadProtoCheck):
		return StatusVersionMismatch
	case errors.As(err, &se):
		return se.Status
	}
	return StatusReadError
}
