package codec

import (
	"log/slog"
	"strconv"
)

// Status is a frame's status code. Codes 0–1024 are reserved for the
// protocol; handlers may return any code, and codes above 1024 belong to the
// application.
type Status uint16

// The status codes the library itself produces (docs/PROTOCOL.md in the
// repository describes when).
const (
	StatusRequest         Status = 0   // carried by requests; ignored by servers
	StatusConnected       Status = 100 // client connected (log only)
	StatusDisconnected    Status = 198 // client disconnected (log only)
	StatusShuttingDown    Status = 199 // server shutting down (log only)
	StatusOK              Status = 200 // success
	StatusNoHandler       Status = 400 // no handler for this request
	StatusEmptyRequest    Status = 401 // empty request text
	StatusPayloadTooLarge Status = 402 // payload length over the configured limit
	StatusVersionMismatch Status = 497 // protocol version mismatch
	StatusReadError       Status = 498 // network read error or malformed frame
	StatusWriteError      Status = 499 // network write error
	StatusHandlerError    Status = 500 // handler returned an error or panicked
	StatusInternalError   Status = 501 // internal error
	StatusBadMAC          Status = 502 // HMAC verification failed
	StatusBusy            Status = 503 // busy: the request did not run (version-1 sessions only)
	StatusHandlerTimeout  Status = 504 // handler timed out: it may have run (version-1 sessions only)
	StatusListenerFailed  Status = 599 // listener failed; the server stops
	MaxReservedStatus     Status = 1024
)

type statusInfo struct {
	text  string
	level slog.Level
}

var statusTable = map[Status]statusInfo{
	StatusRequest:         {"request", slog.LevelDebug},
	StatusConnected:       {"client connected", slog.LevelDebug},
	StatusDisconnected:    {"client disconnected", slog.LevelDebug},
	StatusShuttingDown:    {"server shutting down", slog.LevelInfo},
	StatusOK:              {"success", slog.LevelDebug},
	StatusNoHandler:       {"no handler for this request", slog.LevelInfo},
	StatusEmptyRequest:    {"empty request text", slog.LevelInfo},
	StatusPayloadTooLarge: {"payload length over the limit", slog.LevelWarn},
	StatusVersionMismatch: {"protocol version mismatch", slog.LevelWarn},
	StatusReadError:       {"network read error", slog.LevelInfo},
	StatusWriteError:      {"network write error", slog.LevelInfo},
	StatusHandlerError:    {"handler error", slog.LevelError},
	StatusInternalError:   {"internal error", slog.LevelError},
	StatusBadMAC:          {"HMAC verification failed", slog.LevelWarn},
	StatusBusy:            {"busy: the request did not run", slog.LevelWarn},
	StatusHandlerTimeout:  {"handler timed out", slog.LevelWarn},
	StatusListenerFailed:  {"listener failed", slog.LevelError},
}

// Text returns a short description of s ("success", "no handler for this
// request", ...). Unknown codes get "status N".
func (s Status) Text() string {
	if i, ok := statusTable[s]; ok {
		return i.text
	}
	return "status " + strconv.Itoa(int(s))
}

// String returns the code and its text, e.g. "400 no handler for this request".
func (s Status) String() string {
	if i, ok := statusTable[s]; ok {
		return strconv.Itoa(int(s)) + " " + i.text
	}
	return strconv.Itoa(int(s))
}

// Level is the log level at which a server reports s: Debug for routine
// events, Info for client mistakes, Warn for refusals, Error for faults.
// Unknown codes log at Debug when below 400 and at Info otherwise.
func (s Status) Level() slog.Level {
	if i, ok := statusTable[s]; ok {
		return i.level
	}
	if s < 400 {
		return slog.LevelDebug
	}
	return slog.LevelInfo
}

// ClosesConn reports whether the connection is closed after a frame with
// status s (402, 497, 498, 499, 501, 502 and 599) when the library itself
// refuses with it. Codes that are not the library's own never close a
// connection. A server decides closing from its own refusals, not from the
// code a handler returns: a handler answering 502 does not close anything.
//
// It is on every answer's path, so it is a switch rather than a lookup in
// the status table (a map hash per request); a test keeps the two in step.
func (s Status) ClosesConn() bool {
	switch s {
	case StatusPayloadTooLarge, StatusVersionMismatch, StatusReadError, StatusWriteError,
		StatusInternalError, StatusBadMAC, StatusListenerFailed:
		return true
	}
	return false
}

// Classic reports whether s is safe to send on a version-0 session: it is
// in the original Petrel client's table (100, 101, 198, 199, 200, 400, 401,
// 402, 497, 498, 499, 500, 501, 502, 599) or above 1024. The original
// client crashes on any other code up to 1024, 503 and 504 among them.
// Status 0 is not classic either: requests carry it, answers must not.
func (s Status) Classic() bool {
	switch s {
	case 100, 101, 198, 199, 200, 400, 401, 402, 497, 498, 499, 500, 501, 502, 599:
		return true
	}
	return s > MaxReservedStatus
}

// IsSuccess reports whether s is a 2xx code.
func (s Status) IsSuccess() bool { return s >= 200 && s < 300 }
