package codec

import (
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"hash"
)

// Sizes of the version-1 MAC.
const (
	TagLen   = 32 // bytes of a version-1 frame tag (raw HMAC-SHA256)
	NonceLen = 16 // bytes of a PROTOCHECK nonce
)

// sessionLabel starts the input of the session key derivation.
const sessionLabel = "petrel/v1 session"

// Direction is the first byte under a version-1 tag: it says which way the
// frame travels, so that an answer reflected back as a request fails
// verification.
type Direction byte

// The two directions.
const (
	ClientToServer Direction = 'C' // 0x43: requests
	ServerToClient Direction = 'S' // 0x53: answers
)

// SessionKey derives a version-1 session's key from the configured HMAC key
// and the nonces of the PROTOCHECK exchange:
//
//	K = HMAC-SHA256(key, "petrel/v1 session" ‖ clientNonce ‖ serverNonce)
//
// The nonces are used as given; on the wire each is [NonceLen] bytes, as
// [ParseProtoCheck] returns them. It runs once per session and allocates.
func SessionKey(key, clientNonce, serverNonce []byte) [32]byte {
	h := hmac.New(sha256.New, key)
	h.Write([]byte(sessionLabel))
	h.Write(clientNonce)
	h.Write(serverNonce)
	var k [32]byte
	h.Sum(k[:0])
	return k
}

// FrameMAC signs and verifies version-1 frames under a session key (see
// [SessionKey]). The tag of a frame f travelling in direction dir is the raw
// 32 bytes of
//
//	HMAC-SHA256(K, dir ‖ header(f) ‖ f.Request ‖ f.Payload)
//
// where header(f) is the frame's own 11-byte header, so status, seq, both
// lengths and the request text are covered along with the payload.
//
// A FrameMAC reuses its hash state, so [FrameMAC.AppendSign] and
// [FrameMAC.Verify] do not allocate (AppendSign given room in dst); it is
// therefore not safe for concurrent use. A session key belongs to one
// connection, and so does its FrameMAC.
type FrameMAC struct {
	h   hash.Hash
	in  [1 + HeaderLen]byte // scratch: direction and header
	sum [TagLen]byte        // scratch: the tag Verify computes
}

// NewFrameMAC returns a FrameMAC for sessionKey, normally the 32 bytes of
// [SessionKey]. The key is not retained.
func NewFrameMAC(sessionKey []byte) *FrameMAC {
	return &FrameMAC{h: hmac.New(sha256.New, sessionKey)}
}

// AppendSign appends to dst the 32-byte tag of f travelling in direction
// dir: HMAC-SHA256(K, dir ‖ header(f) ‖ f.Request ‖ f.Payload), where
// header(f) is the 11-byte header encoding f.Status, f.Seq, len(f.Request)
// and len(f.Payload). f.MAC is ignored. A client signs its requests with
// [ClientToServer], a server its answers with [ServerToClient].
//
// A frame that has no header encoding (request text over 255 bytes, or a
// payload of 4 GiB or more) has no tag either: dst is returned unchanged,
// and [AppendFrameV1] and [Buffers.FrameV1] refuse such a frame before
// signing it.
func (m *FrameMAC) AppendSign(dst []byte, dir Direction, f Frame) []byte {
	var h [HeaderLen]byte
	if PutHeader(h[:], f.Status, f.Seq, len(f.Request), len(f.Payload)) != nil {
		return dst
	}
	return m.appendTag(dst, dir, &h, f)
}

// Verify checks f.MAC, the tag as received, against the tag of f in
// direction dir, in constant time. It returns [ErrBadMAC] (status 502) when
// they differ, when f.MAC is not [TagLen] bytes, or when f has no header
// encoding. A server verifies requests with [ClientToServer], a client
// answers with [ServerToClient].
func (m *FrameMAC) Verify(dir Direction, f Frame) error {
	var h [HeaderLen]byte
	if PutHeader(h[:], f.Status, f.Seq, len(f.Request), len(f.Payload)) != nil {
		return ErrBadMAC
	}
	want := m.appendTag(m.sum[:0], dir, &h, f)
	if subtle.ConstantTimeCompare(want, f.MAC) != 1 {
		return ErrBadMAC
	}
	return nil
}

// appendTag appends the tag of f, whose encoded header is h, in direction
// dir.
func (m *FrameMAC) appendTag(dst []byte, dir Direction, h *[HeaderLen]byte, f Frame) []byte {
	m.in[0] = byte(dir)
	copy(m.in[1:], h[:])
	m.h.Reset()
	m.h.Write(m.in[:])
	m.h.Write(f.Request)
	m.h.Write(f.Payload)
	return m.h.Sum(dst)
}
