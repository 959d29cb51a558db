package codec_test

import (
	"bytes"
	"errors"
	"fmt"
	"testing"

	"github.com/petrel-rpc/petrel/codec"
)

func TestAppendProtoCheck(t *testing.T) {
	nonce := testClientNonce
	tests := []struct {
		name    string
		version uint8
		nonce   []byte
		want    []byte
	}{
		{"version 0", 0, nil, []byte{0x00}},
		{"version 0 ignores the nonce", 0, nonce, []byte{0x00}},
		{"version 1", 1, nonce, append([]byte{0x01}, nonce...)},
		{"497 answer, version 1", 1, nil, []byte{0x01}},
		{"version 2", 2, nil, []byte{0x02}},
		{"version 2 with a nonce", 2, nonce, append([]byte{0x02}, nonce...)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := codec.AppendProtoCheck(nil, tt.version, tt.nonce); !bytes.Equal(got, tt.want) {
				t.Fatalf("AppendProtoCheck = % x, want % x", got, tt.want)
			}
			dst := append(make([]byte, 0, 64), "pre"...)
			got := codec.AppendProtoCheck(dst, tt.version, tt.nonce)
			if string(got[:3]) != "pre" || !bytes.Equal(got[3:], tt.want) || &got[0] != &dst[0] {
				t.Fatalf("AppendProtoCheck after a prefix = % x", got)
			}
		})
	}
	if got := codec.AppendProtoCheck(nil, 1, nonce); len(got) != 1+codec.NonceLen {
		t.Errorf("version-1 payload is %d bytes, want 17", len(got))
	}
}

func TestParseProtoCheck(t *testing.T) {
	nonce := testServerNonce
	v1 := append([]byte{0x01}, nonce...)
	tests := []struct {
		name    string
		p       []byte
		version uint8
		nonce   []byte
	}{
		{"version 0", []byte{0x00}, 0, nil},
		{"version 1", v1, 1, nonce},
		{"version 1, zero nonce", make17(1), 1, make([]byte, 16)},
		{"version 2", []byte{0x02}, 2, nil},
		{"version 2 with a nonce", append([]byte{0x02}, nonce...), 2, nil},
		{"version 2 with anything", []byte{0x02, 0xFF}, 2, nil},
		{"version 255", []byte{0xFF}, 255, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			orig := bytes.Clone(tt.p)
			v, n, err := codec.ParseProtoCheck(tt.p)
			if err != nil || v != tt.version || !bytes.Equal(n, tt.nonce) {
				t.Fatalf("ParseProtoCheck(% x) = %d, % x, %v; want %d, % x, nil", tt.p, v, n, err, tt.version, tt.nonce)
			}
			if tt.nonce == nil && n != nil {
				t.Fatalf("nonce = % x, want nil", n)
			}
			if n != nil && (&n[0] != &tt.p[1] || cap(n) != codec.NonceLen) {
				t.Fatalf("nonce does not alias p[1:17] with capacity 16 (cap %d)", cap(n))
			}
			if !bytes.Equal(tt.p, orig) {
				t.Fatalf("ParseProtoCheck modified its input")
			}
		})
	}

	malformed := []struct {
		name    string
		p       []byte
		version uint8
	}{
		{"nil", nil, 0},
		{"empty", []byte{}, 0},
		{"version 0 with a trailing byte", []byte{0x00, 0x00}, 0},
		{"version 0 with a nonce", append([]byte{0x00}, nonce...), 0},
		{"version 1 without a nonce", []byte{0x01}, 1},
		{"version 1, one nonce byte", []byte{0x01, 0xAA}, 1},
		{"version 1, nonce one byte short", v1[:16], 1},
		{"version 1, nonce one byte long", append(bytes.Clone(v1), 0), 1},
		{"version 1, double nonce", append(bytes.Clone(v1), nonce...), 1},
	}
	for _, tt := range malformed {
		t.Run(tt.name, func(t *testing.T) {
			v, n, err := codec.ParseProtoCheck(tt.p)
			if !errors.Is(err, codec.ErrBadProtoCheck) {
				t.Fatalf("ParseProtoCheck(% x) error = %v, want ErrBadProtoCheck", tt.p, err)
			}
			if v != tt.version || n != nil {
				t.Fatalf("ParseProtoCheck(% x) = %d, % x; want %d, nil", tt.p, v, n, tt.version)
			}
			if got := codec.StatusOf(err); got != codec.StatusVersionMismatch {
				t.Fatalf("StatusOf(%v) = %d, want 497", err, got)
			}
			if got := codec.StatusOf(fmt.Errorf("handshake: %w", err)); got != codec.StatusVersionMismatch {
				t.Fatalf("StatusOf(wrapped) = %d, want 497", got)
			}
		})
	}
}

// TestProtoCheckRoundTrip: what AppendProtoCheck writes for versions 0 and
// 1, ParseProtoCheck reads back.
func TestProtoCheckRoundTrip(t *testing.T) {
	for _, v := range []uint8{codec.ProtocolV0, codec.ProtocolV1} {
		p := codec.AppendProtoCheck(nil, v, testClientNonce)
		got, n, err := codec.ParseProtoCheck(p)
		if err != nil || got != v {
			t.Fatalf("version %d: ParseProtoCheck = %d, %v", v, got, err)
		}
		if v == codec.ProtocolV1 && !bytes.Equal(n, testClientNonce) {
			t.Fatalf("nonce = % x, want % x", n, testClientNonce)
		}
	}
}

// make17 returns a 17-byte payload of version v and a zero nonce.
func make17(v byte) []byte {
	p := make([]byte, 17)
	p[0] = v
	return p
}
