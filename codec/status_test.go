package codec_test

import (
	"log/slog"
	"strconv"
	"testing"

	"github.com/petrel-rpc/petrel/codec"
)

func TestLibraryStatuses(t *testing.T) {
	tests := []struct {
		status codec.Status
		code   uint16
		text   string
		level  slog.Level
		closes bool
	}{
		{codec.StatusRequest, 0, "request", slog.LevelDebug, false},
		{codec.StatusConnected, 100, "client connected", slog.LevelDebug, false},
		{codec.StatusDisconnected, 198, "client disconnected", slog.LevelDebug, false},
		{codec.StatusShuttingDown, 199, "server shutting down", slog.LevelInfo, false},
		{codec.StatusOK, 200, "success", slog.LevelDebug, false},
		{codec.StatusNoHandler, 400, "no handler for this request", slog.LevelInfo, false},
		{codec.StatusEmptyRequest, 401, "empty request text", slog.LevelInfo, false},
		{codec.StatusPayloadTooLarge, 402, "payload length over the limit", slog.LevelWarn, true},
		{codec.StatusVersionMismatch, 497, "protocol version mismatch", slog.LevelWarn, true},
		{codec.StatusReadError, 498, "network read error", slog.LevelInfo, true},
		{codec.StatusWriteError, 499, "network write error", slog.LevelInfo, true},
		{codec.StatusHandlerError, 500, "handler error", slog.LevelError, false},
		{codec.StatusInternalError, 501, "internal error", slog.LevelError, true},
		{codec.StatusBadMAC, 502, "HMAC verification failed", slog.LevelWarn, true},
		{codec.StatusBusy, 503, "busy: the request did not run", slog.LevelWarn, false},
		{codec.StatusHandlerTimeout, 504, "handler timed out", slog.LevelWarn, false},
		{codec.StatusListenerFailed, 599, "listener failed", slog.LevelError, true},
	}
	for _, tt := range tests {
		t.Run(strconv.Itoa(int(tt.code)), func(t *testing.T) {
			s := tt.status
			if uint16(s) != tt.code {
				t.Errorf("constant = %d, want %d", s, tt.code)
			}
			if got := s.Text(); got != tt.text {
				t.Errorf("Text() = %q, want %q", got, tt.text)
			}
			if got, want := s.String(), strconv.Itoa(int(tt.code))+" "+tt.text; got != want {
				t.Errorf("String() = %q, want %q", got, want)
			}
			if got := s.Level(); got != tt.level {
				t.Errorf("Level() = %v, want %v", got, tt.level)
			}
			if got := s.ClosesConn(); got != tt.closes {
				t.Errorf("ClosesConn() = %v, want %v", got, tt.closes)
			}
			if got, want := s.IsSuccess(), tt.code == 200; got != want {
				t.Errorf("IsSuccess() = %v, want %v", got, want)
			}
		})
	}
}

// TestClosesConnExactly scans every code: exactly the library's closing
// statuses close a connection.
func TestClosesConnExactly(t *testing.T) {
	closing := map[codec.Status]bool{402: true, 497: true, 498: true, 499: true, 501: true, 502: true, 599: true}
	for c := range 1 << 16 {
		s := codec.Status(c)
		if got := s.ClosesConn(); got != closing[s] {
			t.Errorf("Status(%d).ClosesConn() = %v, want %v", c, got, closing[s])
		}
	}
}

func TestUnknownStatuses(t *testing.T) {
	for _, c := range []uint16{1, 99, 101, 201, 299, 300, 399, 403, 496, 505, 598, 600, 1024, 1025, 40000, 0xFFFF} {
		s := codec.Status(c)
		n := strconv.Itoa(int(c))
		if got, want := s.Text(), "status "+n; got != want {
			t.Errorf("Status(%d).Text() = %q, want %q", c, got, want)
		}
		if got := s.String(); got != n {
			t.Errorf("Status(%d).String() = %q, want %q", c, got, n)
		}
		want := slog.LevelInfo
		if c < 400 {
			want = slog.LevelDebug
		}
		if got := s.Level(); got != want {
			t.Errorf("Status(%d).Level() = %v, want %v", c, got, want)
		}
		if s.ClosesConn() {
			t.Errorf("Status(%d).ClosesConn() = true for a code that is not the library's", c)
		}
	}
}

func TestIsSuccess(t *testing.T) {
	for _, tt := range []struct {
		s    codec.Status
		want bool
	}{
		{0, false}, {100, false}, {199, false}, {200, true}, {201, true},
		{299, true}, {300, false}, {400, false}, {1200, false}, {0xFFFF, false},
	} {
		if got := tt.s.IsSuccess(); got != tt.want {
			t.Errorf("Status(%d).IsSuccess() = %v, want %v", uint16(tt.s), got, tt.want)
		}
	}
}

// TestClassic scans every code: exactly the original client's table and
// the codes above 1024 are safe on a version-0 session.
func TestClassic(t *testing.T) {
	table := map[codec.Status]bool{
		100: true, 101: true, 198: true, 199: true, 200: true, 400: true, 401: true, 402: true,
		497: true, 498: true, 499: true, 500: true, 501: true, 502: true, 599: true,
	}
	for c := range 1 << 16 {
		s := codec.Status(c)
		want := table[s] || c > 1024
		if got := s.Classic(); got != want {
			t.Errorf("Status(%d).Classic() = %v, want %v", c, got, want)
		}
	}
	for _, tt := range []struct {
		s    codec.Status
		want bool
	}{
		{codec.StatusRequest, false},
		{codec.StatusOK, true},
		{codec.StatusBadMAC, true},
		{codec.StatusBusy, false},
		{codec.StatusHandlerTimeout, false},
		{codec.StatusListenerFailed, true},
		{codec.MaxReservedStatus, false},
		{codec.MaxReservedStatus + 1, true},
		{0xFFFF, true},
	} {
		if got := tt.s.Classic(); got != tt.want {
			t.Errorf("%v.Classic() = %v, want %v", tt.s, got, tt.want)
		}
	}
}

// TestClassicLibraryStatuses checks that every status the library produces
// on both versions is classic, and that the version-1-only ones are not.
func TestClassicLibraryStatuses(t *testing.T) {
	v1Only := map[codec.Status]bool{codec.StatusBusy: true, codec.StatusHandlerTimeout: true}
	for _, s := range []codec.Status{
		codec.StatusConnected, codec.StatusDisconnected, codec.StatusShuttingDown, codec.StatusOK,
		codec.StatusNoHandler, codec.StatusEmptyRequest, codec.StatusPayloadTooLarge,
		codec.StatusVersionMismatch, codec.StatusReadError, codec.StatusWriteError,
		codec.StatusHandlerError, codec.StatusInternalError, codec.StatusBadMAC,
		codec.StatusBusy, codec.StatusHandlerTimeout, codec.StatusListenerFailed,
	} {
		if got, want := s.Classic(), !v1Only[s]; got != want {
			t.Errorf("%v.Classic() = %v, want %v", s, got, want)
		}
	}
}
