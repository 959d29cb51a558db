package codec_test

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"sync"
	"testing"

	"github.com/petrel-rpc/petrel/codec"
)

// referenceMAC computes the wire MAC without the codec: base64 (standard,
// padded) of HMAC-SHA256(key, payload).
func referenceMAC(key, payload []byte) []byte {
	h := hmac.New(sha256.New, key)
	h.Write(payload)
	return []byte(base64.StdEncoding.EncodeToString(h.Sum(nil)))
}

// macVectors are keys and payloads to sign, including an empty payload, an
// empty key and a key longer than the hash block.
var macVectors = []struct {
	key, payload []byte
}{
	{[]byte("key"), nil},
	{[]byte("key"), []byte{}},
	{[]byte("key"), []byte("hello")},
	{[]byte("secret"), []byte("The quick brown fox jumps over the lazy dog")},
	{nil, []byte("payload under an empty key")},
	{bytes.Repeat([]byte{0xAA}, 131), []byte("key longer than a SHA-256 block")},
	{[]byte{0, 1, 2, 3}, fill(1<<16, 5)},
}

func TestMACVectors(t *testing.T) {
	for i, v := range macVectors {
		m := codec.NewMAC(v.key)
		want := referenceMAC(v.key, v.payload)
		got := m.AppendSign(nil, v.payload)
		if len(got) != codec.MACLen {
			t.Errorf("vector %d: MAC is %d bytes, want %d", i, len(got), codec.MACLen)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("vector %d: AppendSign = %q, want %q", i, got, want)
		}
		if err := m.Verify(v.payload, want); err != nil {
			t.Errorf("vector %d: Verify of the reference MAC: %v", i, err)
		}
	}
}

// TestMACKnownAnswer checks against RFC 4231 test case 2, whose digest is
// published in hex and encoded to base64 here.
func TestMACKnownAnswer(t *testing.T) {
	sum, err := hex.DecodeString("5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843")
	if err != nil {
		t.Fatal(err)
	}
	want := base64.StdEncoding.EncodeToString(sum)
	if want != "W9zBRr9gdU5qBCQmCJV1x1oAPwidJzmDnexYuWTsOEM=" {
		t.Fatalf("base64 of the RFC digest = %q", want)
	}
	m := codec.NewMAC([]byte("Jefe"))
	if got := m.AppendSign(nil, []byte("what do ya want for nothing?")); string(got) != want {
		t.Errorf("AppendSign = %q, want %q", got, want)
	}
}

func TestMACAppendSignAppends(t *testing.T) {
	m := codec.NewMAC([]byte("key"))
	dst := append(make([]byte, 0, 64), "head:"...)
	got := m.AppendSign(dst, []byte("hello"))
	if string(got[:5]) != "head:" || !bytes.Equal(got[5:], referenceMAC([]byte("key"), []byte("hello"))) {
		t.Fatalf("AppendSign = %q", got)
	}
	if &got[0] != &dst[0] {
		t.Errorf("AppendSign reallocated a buffer with room to spare")
	}
	// A later signature does not change an earlier one's bytes.
	first := bytes.Clone(got)
	_ = m.AppendSign(nil, []byte("other"))
	if !bytes.Equal(got, first) {
		t.Errorf("a second AppendSign changed the first result")
	}
}

func TestMACVerify(t *testing.T) {
	key := []byte("verify key")
	payload := []byte("payload")
	m := codec.NewMAC(key)
	good := m.AppendSign(nil, payload)
	if err := m.Verify(payload, good); err != nil {
		t.Fatalf("Verify(good) = %v", err)
	}

	flipped := bytes.Clone(good)
	flipped[10] ^= 0x01
	padless := bytes.TrimRight(good, "=")
	tests := []struct {
		name    string
		payload []byte
		mac     []byte
	}{
		{"wrong byte", payload, flipped},
		{"wrong payload", []byte("payloaD"), good},
		{"empty payload", nil, good},
		{"nil MAC", payload, nil},
		{"empty MAC", payload, []byte{}},
		{"short MAC", payload, good[:codec.MACLen-1]},
		{"no padding", payload, padless},
		{"long MAC", payload, append(bytes.Clone(good), '=')},
		{"raw digest", payload, func() []byte { h := hmac.New(sha256.New, key); h.Write(payload); return h.Sum(nil) }()},
		{"wrong key", payload, referenceMAC([]byte("other key"), payload)},
		{"url encoding", payload, []byte(base64.URLEncoding.EncodeToString(bytes.Repeat([]byte{0xFF}, 32)))},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			macCopy := bytes.Clone(tt.mac)
			payCopy := bytes.Clone(tt.payload)
			if err := m.Verify(tt.payload, tt.mac); !errors.Is(err, codec.ErrBadMAC) {
				t.Fatalf("Verify = %v, want ErrBadMAC", err)
			} else if codec.StatusOf(err) != codec.StatusBadMAC {
				t.Fatalf("StatusOf(%v) = %d, want 502", err, codec.StatusOf(err))
			}
			if !bytes.Equal(tt.mac, macCopy) || !bytes.Equal(tt.payload, payCopy) {
				t.Fatalf("Verify modified its arguments")
			}
			// A failure leaves the MAC usable.
			if err := m.Verify(payload, good); err != nil {
				t.Fatalf("Verify(good) after a failure = %v", err)
			}
		})
	}

	// A MAC under another key rejects what this one signed.
	if err := codec.NewMAC([]byte("other key")).Verify(payload, good); !errors.Is(err, codec.ErrBadMAC) {
		t.Errorf("Verify under the wrong key = %v, want ErrBadMAC", err)
	}
}

func TestMACCopiesKey(t *testing.T) {
	key := []byte("mutable key")
	m := codec.NewMAC(key)
	want := referenceMAC([]byte("mutable key"), []byte("p"))
	copy(key, "XXXXXXXXXXX")
	if got := m.AppendSign(nil, []byte("p")); !bytes.Equal(got, want) {
		t.Errorf("changing the caller's key changed the MAC")
	}
	if got := m.Clone().AppendSign(nil, []byte("p")); !bytes.Equal(got, want) {
		t.Errorf("a clone made after changing the caller's key signs differently")
	}
}

func TestMACClone(t *testing.T) {
	key := []byte("clone key")
	m := codec.NewMAC(key)
	c := m.Clone()
	if c == m {
		t.Fatal("Clone returned the same MAC")
	}
	// Interleaved use: neither disturbs the other's state or results.
	a := m.AppendSign(nil, []byte("first"))
	b := c.AppendSign(nil, []byte("second"))
	if !bytes.Equal(a, referenceMAC(key, []byte("first"))) || !bytes.Equal(b, referenceMAC(key, []byte("second"))) {
		t.Fatalf("interleaved signatures are wrong: %q, %q", a, b)
	}
	if err := c.Verify([]byte("first"), a); err != nil {
		t.Errorf("clone rejects the original's MAC: %v", err)
	}
	if err := m.Verify([]byte("second"), b); err != nil {
		t.Errorf("original rejects the clone's MAC: %v", err)
	}
}

// TestMACClonesConcurrent runs one clone per goroutine, as one per
// connection; under -race it shows that clones share no mutable state.
func TestMACClonesConcurrent(t *testing.T) {
	m := codec.NewMAC([]byte("shared key"))
	const workers, rounds = 8, 200
	errs := make(chan error, workers)
	var wg sync.WaitGroup
	for w := range workers {
		c := m.Clone()
		wg.Add(1)
		go func() {
			defer wg.Done()
			payload := []byte(fmt.Sprintf("worker %d", w))
			want := referenceMAC([]byte("shared key"), payload)
			var buf []byte
			for range rounds {
				buf = c.AppendSign(buf[:0], payload)
				if !bytes.Equal(buf, want) {
					errs <- fmt.Errorf("worker %d: AppendSign = %q, want %q", w, buf, want)
					return
				}
				if err := c.Verify(payload, want); err != nil {
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
