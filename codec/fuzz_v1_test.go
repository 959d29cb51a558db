package codec_test

import (
	"bytes"
	"errors"
	"testing"

	"github.com/petrel-rpc/petrel/codec"
)

// fuzzSessionKey is the session key the version-1 fuzz targets tag with.
var fuzzSessionKey = func() []byte {
	k := codec.SessionKey(fuzzKey, testClientNonce, testServerNonce)
	return k[:]
}()

// fuzzDir picks a direction from a fuzzed bool.
func fuzzDir(server bool) codec.Direction {
	if server {
		return codec.ServerToClient
	}
	return codec.ClientToServer
}

// FuzzParseV1 feeds arbitrary bytes to Parse under version-1 options, with
// and without tags, under arbitrary limits, checks its answers as FuzzParse
// does, and checks that a parsed frame's tag verifies exactly when it is
// the tag the encoder would write.
func FuzzParseV1(f *testing.F) {
	m := codec.NewFrameMAC(fuzzSessionKey)
	for _, fr := range frameCases() {
		for _, mac := range []bool{false, true} {
			var sm *codec.FrameMAC
			if mac {
				sm = m
			}
			for _, server := range []bool{false, true} {
				buf, err := codec.AppendFrameV1(nil, fr, sm, fuzzDir(server))
				if err != nil {
					f.Fatal(err)
				}
				f.Add(buf, mac, server, uint32(0))
				f.Add(buf, mac, server, uint32(len(fr.Payload)))
				if len(fr.Payload) > 0 {
					f.Add(buf, mac, server, uint32(len(fr.Payload)-1))
				}
				f.Add(buf[:len(buf)-1], mac, server, uint32(0))
				f.Add(append(bytes.Clone(buf), buf...), mac, server, uint32(0))
			}
		}
	}
	v0, _ := codec.AppendFrame(nil, codec.Frame{Seq: 1, Request: []byte("echo"), Payload: []byte("x")}, codec.NewMAC(fuzzKey))
	f.Add(v0, true, false, uint32(0))
	f.Add(header(0xFFFF, 0xFFFFFFFF, 255, 0xFFFFFFFF), true, true, uint32(0xFFFFFFFF))
	f.Add([]byte{}, true, false, uint32(0))

	f.Fuzz(func(t *testing.T, buf []byte, mac, server bool, limit uint32) {
		o := codec.Options{MAC: mac, Version: codec.ProtocolV1, MaxPayload: limit}
		orig := bytes.Clone(buf)
		fr, n, need := checkParse(t, buf, o)
		if !bytes.Equal(buf, orig) {
			t.Fatalf("Parse modified its input")
		}
		if n == 0 {
			if need > 0 && need <= maxFeed && len(buf) >= codec.HeaderLen {
				more := append(bytes.Clone(buf), make([]byte, need)...)
				if _, n2, need2, err := codec.Parse(more, o); n2 != len(more) || need2 != 0 || err != nil {
					t.Fatalf("after feeding the %d missing bytes: n %d, need %d, %v", need, n2, need2, err)
				}
			}
			return
		}
		dir := fuzzDir(server)
		var sm *codec.FrameMAC
		if mac {
			sm = m
			want := m.AppendSign(nil, dir, fr)
			err := m.Verify(dir, fr)
			if same := bytes.Equal(fr.MAC, want); same != (err == nil) {
				t.Fatalf("Verify = %v; tag equals the encoder's: %v", err, same)
			}
			if err != nil && !errors.Is(err, codec.ErrBadMAC) {
				t.Fatalf("Verify error %v is not ErrBadMAC", err)
			}
			if err != nil {
				return
			}
		}
		// An unkeyed frame, or one whose tag verified, re-encodes to the
		// bytes it was parsed from.
		again, err := codec.AppendFrameV1(nil, fr, sm, dir)
		if err != nil {
			t.Fatalf("AppendFrameV1 of a parsed frame: %v", err)
		}
		if !bytes.Equal(again, buf[:n]) {
			t.Fatalf("re-encoded frame differs from its input")
		}
		checkParse(t, buf[n:], o)
	})
}

// FuzzRoundTripV1 encodes arbitrary frames with AppendFrameV1 and
// Buffers.FrameV1, parses them back, verifies their tag, and then flips one
// arbitrary bit of the encoding: whatever Parse makes of the tampered bytes,
// no frame it returns verifies, and neither does the original in the other
// direction or under another session's key.
func FuzzRoundTripV1(f *testing.F) {
	for _, fr := range frameCases() {
		f.Add(uint16(fr.Status), fr.Seq, fr.Request, fr.Payload, false, uint32(0), uint8(1))
		f.Add(uint16(fr.Status), fr.Seq, fr.Request, fr.Payload, true, uint32(6), uint8(0x80))
		f.Add(uint16(fr.Status), fr.Seq, fr.Request, fr.Payload, true, uint32(0xFFFFFFFF), uint8(0x10))
	}
	f.Add(uint16(0), uint32(0), bytes.Repeat([]byte{'x'}, 256), []byte("too long"), false, uint32(0), uint8(1))

	m := codec.NewFrameMAC(fuzzSessionKey)
	otherKey := codec.SessionKey(fuzzKey, testServerNonce, testClientNonce)
	other := codec.NewFrameMAC(otherKey[:])
	f.Fuzz(func(t *testing.T, status uint16, seq uint32, request, payload []byte, server bool, at uint32, mask uint8) {
		dir := fuzzDir(server)
		in := codec.Frame{Status: codec.Status(status), Seq: seq, Request: request, Payload: payload}
		var b codec.Buffers
		vec, verr := b.FrameV1(in, m, dir)
		buf, err := codec.AppendFrameV1(nil, in, m, dir)
		if len(request) > codec.MaxRequestLen {
			if !errors.Is(err, codec.ErrRequestTooLong) || buf != nil {
				t.Fatalf("AppendFrameV1(%d-byte request) = %d bytes, %v; want ErrRequestTooLong", len(request), len(buf), err)
			}
			if !errors.Is(verr, codec.ErrRequestTooLong) || vec != nil {
				t.Fatalf("Buffers.FrameV1(%d-byte request) = %v; want ErrRequestTooLong", len(request), verr)
			}
			return
		}
		if err != nil || verr != nil {
			t.Fatalf("AppendFrameV1: %v; Buffers.FrameV1: %v", err, verr)
		}
		if !bytes.Equal(bytes.Join(vec, nil), buf) {
			t.Fatalf("Buffers.FrameV1 and AppendFrameV1 disagree")
		}

		o := codec.Options{MAC: true, Version: codec.ProtocolV1, MaxPayload: uint32(len(payload))}
		h, _ := codec.ParseHeader(buf)
		if len(buf) != o.FrameLen(h) {
			t.Fatalf("encoded %d bytes, FrameLen says %d", len(buf), o.FrameLen(h))
		}
		out, n, need, err := codec.Parse(buf, o)
		if err != nil || n != len(buf) || need != 0 {
			t.Fatalf("Parse = n %d, need %d, %v; want n %d", n, need, err, len(buf))
		}
		checkFields(t, out, in)
		if err := m.Verify(dir, out); err != nil {
			t.Fatalf("Verify: %v", err)
		}
		if err := m.Verify(fuzzDir(!server), out); !errors.Is(err, codec.ErrBadMAC) {
			t.Fatalf("Verify in the other direction = %v, want ErrBadMAC", err)
		}
		if err := other.Verify(dir, out); !errors.Is(err, codec.ErrBadMAC) {
			t.Fatalf("Verify under another session's key = %v, want ErrBadMAC", err)
		}

		// Tamper with one bit anywhere in the frame.
		if mask == 0 {
			mask = 1
		}
		bad := bytes.Clone(buf)
		i := int(at % uint32(len(bad)))
		bad[i] ^= mask
		o.MaxPayload = 0 // the default: a tampered length may grow
		tf, tn, _, err := codec.Parse(bad, o)
		if err != nil || tn == 0 {
			return // refused or incomplete: nothing to verify
		}
		if err := m.Verify(dir, tf); !errors.Is(err, codec.ErrBadMAC) {
			t.Fatalf("a frame with bit %#x of byte %d flipped verified (%v)", mask, i, err)
		}
	})
}

// FuzzProtoCheck feeds arbitrary payloads to ParseProtoCheck: it accepts
// exactly the well-formed ones, which AppendProtoCheck writes back byte for
// byte.
func FuzzProtoCheck(f *testing.F) {
	f.Add([]byte{})
	f.Add(codec.AppendProtoCheck(nil, 0, nil))
	f.Add(codec.AppendProtoCheck(nil, 1, testClientNonce))
	f.Add(codec.AppendProtoCheck(nil, 1, nil))
	f.Add(codec.AppendProtoCheck(nil, 2, testClientNonce))
	f.Add([]byte{0, 0})

	f.Fuzz(func(t *testing.T, p []byte) {
		orig := bytes.Clone(p)
		v, nonce, err := codec.ParseProtoCheck(p)
		if !bytes.Equal(p, orig) {
			t.Fatalf("ParseProtoCheck modified its input")
		}
		wellFormed := len(p) > 0 && (p[0] > 1 || (p[0] == 0 && len(p) == 1) || (p[0] == 1 && len(p) == 17))
		if wellFormed != (err == nil) {
			t.Fatalf("ParseProtoCheck(% x) error = %v", p, err)
		}
		if err != nil {
			if !errors.Is(err, codec.ErrBadProtoCheck) || codec.StatusOf(err) != codec.StatusVersionMismatch || nonce != nil {
				t.Fatalf("ParseProtoCheck(% x) = nonce % x, %v", p, nonce, err)
			}
			return
		}
		if v != p[0] {
			t.Fatalf("version %d, payload starts with %d", v, p[0])
		}
		if v != codec.ProtocolV1 {
			if nonce != nil {
				t.Fatalf("version %d with a nonce", v)
			}
			if v == codec.ProtocolV0 && !bytes.Equal(codec.AppendProtoCheck(nil, v, nil), p) {
				t.Fatalf("version 0 does not round-trip")
			}
			return
		}
		within(t, "nonce", p, nonce, 1, len(p))
		if len(nonce) != codec.NonceLen || !bytes.Equal(codec.AppendProtoCheck(nil, v, nonce), p) {
			t.Fatalf("version 1 does not round-trip: nonce % x", nonce)
		}
	})
}
