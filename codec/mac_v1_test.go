package codec_test

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"sync"
	"testing"

	"github.com/petrel-rpc/petrel/codec"
)

// Fixed nonces for the known-answer tests: 00..0f and 10..1f.
var (
	testClientNonce = []byte{0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x09, 0x0a, 0x0b, 0x0c, 0x0d, 0x0e, 0x0f}
	testServerNonce = []byte{0x10, 0x11, 0x12, 0x13, 0x14, 0x15, 0x16, 0x17, 0x18, 0x19, 0x1a, 0x1b, 0x1c, 0x1d, 0x1e, 0x1f}
)

// testSessionKey is SessionKey(testKey, testClientNonce, testServerNonce).
func testSessionKey() []byte {
	k := codec.SessionKey(testKey, testClientNonce, testServerNonce)
	return k[:]
}

// testFrameMAC returns a FrameMAC under testSessionKey when mac is set, and
// nil otherwise.
func testFrameMAC(mac bool) *codec.FrameMAC {
	if !mac {
		return nil
	}
	return codec.NewFrameMAC(testSessionKey())
}

// referenceSessionKey derives the session key without the codec.
func referenceSessionKey(key, clientNonce, serverNonce []byte) []byte {
	h := hmac.New(sha256.New, key)
	h.Write([]byte("petrel/v1 session"))
	h.Write(clientNonce)
	h.Write(serverNonce)
	return h.Sum(nil)
}

// referenceTag computes a version-1 tag without the codec, over a
// hand-built header.
func referenceTag(sessionKey []byte, dir byte, f codec.Frame) []byte {
	msg := []byte{dir}
	msg = append(msg, header(uint16(f.Status), f.Seq, uint8(len(f.Request)), uint32(len(f.Payload)))...)
	msg = append(msg, f.Request...)
	msg = append(msg, f.Payload...)
	h := hmac.New(sha256.New, sessionKey)
	h.Write(msg)
	return h.Sum(nil)
}

func mustHex(tb testing.TB, s string) []byte {
	tb.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

func TestSessionKeyReference(t *testing.T) {
	tests := []struct {
		name              string
		key, client, srvr []byte
	}{
		{"fixed", testKey, testClientNonce, testServerNonce},
		{"empty key", nil, testClientNonce, testServerNonce},
		{"long key", bytes.Repeat([]byte{0xAA}, 131), testClientNonce, testServerNonce},
		{"zero nonces", testKey, make([]byte, codec.NonceLen), make([]byte, codec.NonceLen)},
		{"swapped nonces", testKey, testServerNonce, testClientNonce},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := codec.SessionKey(tt.key, tt.client, tt.srvr)
			if want := referenceSessionKey(tt.key, tt.client, tt.srvr); !bytes.Equal(got[:], want) {
				t.Fatalf("SessionKey = %x, want %x", got, want)
			}
		})
	}
}

// TestSessionKeyKnownAnswer pins the derivation, computed once outside Go
// (Python's hmac module): a change of label, order or hash is caught.
func TestSessionKeyKnownAnswer(t *testing.T) {
	want := mustHex(t, "516b235f3bba79b039f65b0a49bb3a809e99f25345c8e073f49b6e5601833929")
	if got := codec.SessionKey([]byte("petrel test key"), testClientNonce, testServerNonce); !bytes.Equal(got[:], want) {
		t.Fatalf("SessionKey = %x, want %x", got, want)
	}
	// The label is exactly these 17 bytes, the nonces follow it directly.
	if got := referenceSessionKey([]byte("petrel test key"), testClientNonce, testServerNonce); !bytes.Equal(got, want) {
		t.Fatalf("reference derivation = %x, want %x", got, want)
	}
}

// TestSessionKeyInputs checks that each input changes the key, and that
// the two nonces are not interchangeable.
func TestSessionKeyInputs(t *testing.T) {
	base := codec.SessionKey(testKey, testClientNonce, testServerNonce)
	other := bytes.Clone(testClientNonce)
	other[15] ^= 1
	for name, k := range map[string][32]byte{
		"key":            codec.SessionKey([]byte("petrel test keY"), testClientNonce, testServerNonce),
		"client nonce":   codec.SessionKey(testKey, other, testServerNonce),
		"server nonce":   codec.SessionKey(testKey, testClientNonce, other),
		"swapped nonces": codec.SessionKey(testKey, testServerNonce, testClientNonce),
	} {
		if k == base {
			t.Errorf("changing the %s does not change the session key", name)
		}
	}
}

func TestFrameMACReference(t *testing.T) {
	sk := testSessionKey()
	m := codec.NewFrameMAC(sk)
	for i, f := range frameCases() {
		for _, dir := range []codec.Direction{codec.ClientToServer, codec.ServerToClient} {
			want := referenceTag(sk, byte(dir), f)
			got := m.AppendSign(nil, dir, f)
			if len(got) != codec.TagLen {
				t.Errorf("frame %d, %c: tag is %d bytes, want %d", i, dir, len(got), codec.TagLen)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("frame %d, %c: AppendSign = %x, want %x", i, dir, got, want)
			}
			f.MAC = want
			if err := m.Verify(dir, f); err != nil {
				t.Errorf("frame %d, %c: Verify of the reference tag: %v", i, dir, err)
			}
		}
	}
}

// TestFrameMACKnownAnswer pins the tag of one answer and one request under
// the known-answer session key, computed once outside Go.
func TestFrameMACKnownAnswer(t *testing.T) {
	sk := mustHex(t, "516b235f3bba79b039f65b0a49bb3a809e99f25345c8e073f49b6e5601833929")
	m := codec.NewFrameMAC(sk)
	tests := []struct {
		dir   codec.Direction
		frame codec.Frame
		tag   string
	}{
		{codec.ServerToClient, codec.Frame{Status: 200, Seq: 7, Request: []byte("echo"), Payload: []byte("hello")},
			"d8f1563132715e35a5af48c12a096a808e8febc94a11ba5895700ced026bebc6"},
		{codec.ClientToServer, codec.Frame{Status: 0, Seq: 7, Request: []byte("echo"), Payload: []byte("hello")},
			"2686b2d7dac09f7c1cb25a51cf66d13643e275cee10891d6f9772b9c573b366f"},
	}
	for _, tt := range tests {
		want := mustHex(t, tt.tag)
		if got := m.AppendSign(nil, tt.dir, tt.frame); !bytes.Equal(got, want) {
			t.Errorf("%c: AppendSign = %x, want %x", tt.dir, got, want)
		}
		if got := referenceTag(sk, byte(tt.dir), tt.frame); !bytes.Equal(got, want) {
			t.Errorf("%c: reference tag = %x, want %x", tt.dir, got, want)
		}
	}
	if codec.ClientToServer != 0x43 || codec.ServerToClient != 0x53 {
		t.Errorf("directions are %#x, %#x; want 0x43, 0x53", byte(codec.ClientToServer), byte(codec.ServerToClient))
	}
}

func TestFrameMACAppendSignAppends(t *testing.T) {
	m := testFrameMAC(true)
	f := codec.Frame{Status: 200, Seq: 1, Request: []byte("r"), Payload: []byte("p")}
	dst := append(make([]byte, 0, 64), "head:"...)
	got := m.AppendSign(dst, codec.ServerToClient, f)
	if string(got[:5]) != "head:" || !bytes.Equal(got[5:], referenceTag(testSessionKey(), 'S', f)) {
		t.Fatalf("AppendSign = %x", got)
	}
	if &got[0] != &dst[0] {
		t.Errorf("AppendSign reallocated a buffer with room to spare")
	}
	first := bytes.Clone(got)
	_ = m.AppendSign(nil, codec.ClientToServer, f)
	if !bytes.Equal(got, first) {
		t.Errorf("a second AppendSign changed the first result")
	}
	// f.MAC is not part of what is signed.
	f.MAC = []byte("ignored")
	if again := m.AppendSign(nil, codec.ServerToClient, f); !bytes.Equal(again, first[5:]) {
		t.Errorf("f.MAC changed the tag")
	}
}

// TestFrameMACVerify changes one covered thing at a time: each change fails
// verification, and a failure leaves the FrameMAC usable.
func TestFrameMACVerify(t *testing.T) {
	m := testFrameMAC(true)
	good := codec.Frame{Status: 200, Seq: 7, Request: []byte("echo"), Payload: []byte("hello")}
	good.MAC = m.AppendSign(nil, codec.ServerToClient, good)
	if err := m.Verify(codec.ServerToClient, good); err != nil {
		t.Fatalf("Verify(good) = %v", err)
	}

	with := func(change func(f *codec.Frame)) codec.Frame {
		f := good
		f.Request, f.Payload, f.MAC = bytes.Clone(good.Request), bytes.Clone(good.Payload), bytes.Clone(good.MAC)
		change(&f)
		return f
	}
	v0 := codec.NewMAC(testSessionKey()).AppendSign(nil, good.Payload)
	tests := []struct {
		name  string
		dir   codec.Direction
		frame codec.Frame
	}{
		{"reflected", codec.ClientToServer, good},
		{"other direction byte", codec.Direction('X'), good},
		{"status", codec.ServerToClient, with(func(f *codec.Frame) { f.Status = 500 })},
		{"seq", codec.ServerToClient, with(func(f *codec.Frame) { f.Seq = 8 })},
		{"seq high byte", codec.ServerToClient, with(func(f *codec.Frame) { f.Seq |= 1 << 24 })},
		{"request", codec.ServerToClient, with(func(f *codec.Frame) { f.Request[0] = 'E' })},
		{"payload", codec.ServerToClient, with(func(f *codec.Frame) { f.Payload[4] = 'O' })},
		{"byte moved from request to payload", codec.ServerToClient, with(func(f *codec.Frame) { f.Request, f.Payload = []byte("ech"), []byte("ohello") })},
		{"byte moved from payload to request", codec.ServerToClient, with(func(f *codec.Frame) { f.Request, f.Payload = []byte("echoh"), []byte("ello") })},
		{"empty payload", codec.ServerToClient, with(func(f *codec.Frame) { f.Payload = nil })},
		{"tag byte", codec.ServerToClient, with(func(f *codec.Frame) { f.MAC[31] ^= 0x80 })},
		{"nil tag", codec.ServerToClient, with(func(f *codec.Frame) { f.MAC = nil })},
		{"empty tag", codec.ServerToClient, with(func(f *codec.Frame) { f.MAC = []byte{} })},
		{"short tag", codec.ServerToClient, with(func(f *codec.Frame) { f.MAC = f.MAC[:codec.TagLen-1] })},
		{"long tag", codec.ServerToClient, with(func(f *codec.Frame) { f.MAC = append(f.MAC, 0) })},
		{"version-0 MAC", codec.ServerToClient, with(func(f *codec.Frame) { f.MAC = v0 })},
		{"unencodable request", codec.ServerToClient, with(func(f *codec.Frame) { f.Request = fill(256, 'a') })},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			mac := bytes.Clone(tt.frame.MAC)
			err := m.Verify(tt.dir, tt.frame)
			if !errors.Is(err, codec.ErrBadMAC) {
				t.Fatalf("Verify = %v, want ErrBadMAC", err)
			}
			if codec.StatusOf(err) != codec.StatusBadMAC {
				t.Fatalf("StatusOf(%v) = %d, want 502", err, codec.StatusOf(err))
			}
			if !bytes.Equal(tt.frame.MAC, mac) {
				t.Fatalf("Verify modified the tag")
			}
			if err := m.Verify(codec.ServerToClient, good); err != nil {
				t.Fatalf("Verify(good) after a failure = %v", err)
			}
		})
	}

	// Another session's key rejects it: a frame recorded on one connection
	// fails on any other.
	otherNonce := bytes.Clone(testServerNonce)
	otherNonce[0] ^= 1
	otherKey := codec.SessionKey(testKey, testClientNonce, otherNonce)
	if err := codec.NewFrameMAC(otherKey[:]).Verify(codec.ServerToClient, good); !errors.Is(err, codec.ErrBadMAC) {
		t.Errorf("Verify under another session's key = %v, want ErrBadMAC", err)
	}
}

// TestFrameMACUnencodable: a frame without a header encoding gets no tag.
func TestFrameMACUnencodable(t *testing.T) {
	m := testFrameMAC(true)
	dst := []byte("prefix")
	got := m.AppendSign(dst, codec.ClientToServer, codec.Frame{Request: fill(256, 'a')})
	if string(got) != "prefix" {
		t.Fatalf("AppendSign of a 256-byte request = %q, want dst unchanged", got)
	}
}

func TestFrameMACDoesNotRetainKey(t *testing.T) {
	key := testSessionKey()
	m := codec.NewFrameMAC(key)
	f := codec.Frame{Seq: 1, Request: []byte("r")}
	want := referenceTag(testSessionKey(), 'C', f)
	for i := range key {
		key[i] = 0
	}
	if got := m.AppendSign(nil, codec.ClientToServer, f); !bytes.Equal(got, want) {
		t.Errorf("changing the caller's key changed the tag")
	}
}

// TestFrameMACsConcurrent runs one FrameMAC per goroutine, as one per
// connection; under -race it shows that they share no mutable state.
func TestFrameMACsConcurrent(t *testing.T) {
	sk := testSessionKey()
	const workers, rounds = 8, 200
	errs := make(chan error, workers)
	var wg sync.WaitGroup
	for w := range workers {
		m := codec.NewFrameMAC(sk)
		wg.Add(1)
		go func() {
			defer wg.Done()
			f := codec.Frame{Seq: uint32(w), Request: []byte("work"), Payload: []byte(fmt.Sprintf("worker %d", w))}
			want := referenceTag(sk, 'C', f)
			var buf []byte
			for range rounds {
				buf = m.AppendSign(buf[:0], codec.ClientToServer, f)
				if !bytes.Equal(buf, want) {
					errs <- fmt.Errorf("worker %d: AppendSign = %x, want %x", w, buf, want)
					return
				}
				f.MAC = want
				if err := m.Verify(codec.ClientToServer, f); err != nil {
					errs <- fmt.Errorf("worker %d: %w", w, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}
