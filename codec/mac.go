package codec

import (
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"hash"
)

// MAC signs and verifies payloads with HMAC-SHA256 under one key, encoded
// as 44 bytes of standard base64 (with padding), as the classic protocol
// defines. It reuses its hash state, so [MAC.AppendSign] and [MAC.Verify]
// do not allocate; it is therefore not safe for concurrent use: give each
// connection its own (see [MAC.Clone]).
type MAC struct {
	key []byte
	h   hash.Hash
	sum [sha256.Size]byte
	enc [MACLen]byte
}

// NewMAC returns a MAC for key. The key is copied.
func NewMAC(key []byte) *MAC {
	k := append([]byte(nil), key...)
	return &MAC{key: k, h: hmac.New(sha256.New, k)}
}

// Clone returns an independent MAC with the same key.
func (m *MAC) Clone() *MAC { return NewMAC(m.key) }

func (m *MAC) compute(payload []byte) []byte {
	m.h.Reset()
	m.h.Write(payload)
	s := m.h.Sum(m.sum[:0])
	base64.StdEncoding.Encode(m.enc[:], s)
	return m.enc[:]
}

// AppendSign appends the 44-byte MAC of payload to dst.
func (m *MAC) AppendSign(dst, payload []byte) []byte {
	return append(dst, m.compute(payload)...)
}

// Verify checks mac against payload in constant time and returns
// [ErrBadMAC] when they do not match (including a mac of the wrong length).
func (m *MAC) Verify(payload, mac []byte) error {
	want := m.compute(payload)
	if subtle.ConstantTimeCompare(want, mac) != 1 {
		return ErrBadMAC
	}
	return nil
}
