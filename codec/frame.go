package codec

import (
	"encoding/binary"
	"slices"
)

// Sizes and limits of the wire format.
const (
	HeaderLen         = 11      // bytes in a frame header
	MACLen            = 44      // bytes in a frame's HMAC (base64 of SHA-256)
	MaxRequestLen     = 255     // longest request text, in bytes
	DefaultMaxPayload = 4 << 20 // default payload limit, in bytes (4 MiB)
	ProtocolVersion   = 0       // the classic protocol version; see ProtocolV0 and ProtocolV1
	ProtoCheck        = "PROTOCHECK"
)

// Protocol versions, as carried in the first byte of a PROTOCHECK payload.
const (
	ProtocolV0 = 0 // classic: the MAC covers the payload only
	ProtocolV1 = 1 // negotiated: session key, 32-byte tag over the whole frame, strict seq
)

// Frame is one decoded or to-be-encoded message. Request, Payload and MAC
// alias the buffer they were parsed from; copy them to keep them.
type Frame struct {
	Status  Status // status code; requests carry 0
	Seq     uint32 // sequence number; an answer echoes its request's
	Request []byte // request (handler) name, at most 255 bytes
	Payload []byte // opaque payload
	MAC     []byte // the MAC as received (44 bytes, or the 32-byte tag under version 1); nil when MACs are off
}

// Header is a decoded frame header.
type Header struct {
	Status     Status
	Seq        uint32
	RequestLen uint8  // bytes of request text
	PayloadLen uint32 // bytes of payload as declared
}

// Options says how to parse: the payload limit, whether a MAC follows each
// frame and, if so, which version's. The zero value means the 4 MiB default
// limit and no MAC.
type Options struct {
	MaxPayload uint32 // payload limit in bytes; 0 means DefaultMaxPayload
	MAC        bool   // frames carry a MAC after the payload
	// Version is the session's protocol version, 0 (the default) or 1: when
	// MAC is set, frames carry a 44-byte (version 0) or 32-byte (version 1)
	// MAC. Values above 1 are reserved and read as 1. Without MAC, frames of
	// both versions have the same layout and Version changes nothing here.
	Version uint8
}

// Limit returns the payload limit in force: MaxPayload, or the default.
func (o Options) Limit() uint32 {
	if o.MaxPayload == 0 {
		return DefaultMaxPayload
	}
	return o.MaxPayload
}

// MACLen returns the bytes that follow each frame's payload under o: 0
// without MAC, [MACLen] (44) for version 0, [TagLen] (32) for version 1.
func (o Options) MACLen() int {
	switch {
	case !o.MAC:
		return 0
	case o.Version == ProtocolV0:
		return MACLen
	}
	return TagLen
}

// FrameLen returns the total bytes of a frame with header h under o,
// the MAC included.
func (o Options) FrameLen(h Header) int {
	return HeaderLen + int(h.RequestLen) + int(h.PayloadLen) + o.MACLen()
}

// FrameLen returns the total bytes of a version-0 frame with this header,
// with a 44-byte MAC when mac is set. See [Options.FrameLen] for version 1.
func (h Header) FrameLen(mac bool) int {
	n := HeaderLen + int(h.RequestLen) + int(h.PayloadLen)
	if mac {
		n += MACLen
	}
	return n
}

// ParseHeader decodes the header at the front of b, which must hold at
// least HeaderLen bytes.
func ParseHeader(b []byte) (Header, error) {
	if len(b) < HeaderLen {
		return Header{}, ErrShortBuffer
	}
	return Header{
		Status:     Status(binary.LittleEndian.Uint16(b[0:2])),
		Seq:        binary.LittleEndian.Uint32(b[2:6]),
		RequestLen: b[6],
		PayloadLen: binary.LittleEndian.Uint32(b[7:11]),
	}, nil
}

// PutHeader writes a header into b[:HeaderLen]. It refuses request text
// longer than 255 bytes and negative or over-4GiB payload lengths.
func PutHeader(b []byte, status Status, seq uint32, requestLen, payloadLen int) error {
	if len(b) < HeaderLen {
		return ErrShortBuffer
	}
	if requestLen < 0 || requestLen > MaxRequestLen {
		return ErrRequestTooLong
	}
	if payloadLen < 0 || uint64(payloadLen) > 0xFFFFFFFF {
		return &LimitError{Declared: uint64(payloadLen), Limit: 0xFFFFFFFF}
	}
	binary.LittleEndian.PutUint16(b[0:2], uint16(status))
	binary.LittleEndian.PutUint32(b[2:6], seq)
	b[6] = uint8(requestLen)
	binary.LittleEndian.PutUint32(b[7:11], uint32(payloadLen))
	return nil
}

// Parse decodes the frame at the front of buf without copying.
//
// When buf holds a whole frame, Parse returns it, n = its length in bytes
// and need = 0; the frame's slices alias buf. When buf holds less, it
// returns n = 0 and need > 0: the number of bytes still missing, counted to
// the end of the header while the header is incomplete and to the end of the
// frame after that. Nothing is allocated either way.
//
// A header declaring a payload over o's limit is refused at once with a
// *[LimitError] (status 402), however little of the frame has arrived.
//
// With o.MAC set, the frame's MAC field holds the [Options.MACLen] bytes
// after the payload: the 44-byte MAC of version 0 or the 32-byte tag of
// version 1, as o.Version says. Parse does not verify it; see [MAC.Verify]
// and [FrameMAC.Verify].
func Parse(buf []byte, o Options) (f Frame, n int, need int, err error) {
	if len(buf) < HeaderLen {
		return Frame{}, 0, HeaderLen - len(buf), nil
	}
	h, _ := ParseHeader(buf)
	if limit := o.Limit(); h.PayloadLen > limit {
		return Frame{}, 0, 0, &LimitError{Declared: uint64(h.PayloadLen), Limit: uint64(limit)}
	}
	total := o.FrameLen(h)
	if len(buf) < total {
		return Frame{}, 0, total - len(buf), nil
	}
	reqEnd := HeaderLen + int(h.RequestLen)
	payEnd := reqEnd + int(h.PayloadLen)
	f = Frame{
		Status:  h.Status,
		Seq:     h.Seq,
		Request: buf[HeaderLen:reqEnd:reqEnd],
		Payload: buf[reqEnd:payEnd:payEnd],
	}
	if payEnd < total {
		f.MAC = buf[payEnd:total:total]
	}
	return f, total, 0, nil
}

// AppendFrame appends the version-0 encoding of f to dst and returns the
// extended buffer. When m is non-nil the payload is signed with it and the
// 44-byte MAC appended (f.MAC is ignored); otherwise no MAC is written. It
// refuses request text over 255 bytes; dst is returned unchanged on error.
// See [AppendFrameV1] for version-1 sessions.
func AppendFrame(dst []byte, f Frame, m *MAC) ([]byte, error) {
	var h [HeaderLen]byte
	if err := PutHeader(h[:], f.Status, f.Seq, len(f.Request), len(f.Payload)); err != nil {
		return dst, err
	}
	extra := 0
	if m != nil {
		extra = MACLen
	}
	dst = appendBody(dst, &h, f, extra)
	if m != nil {
		dst = m.AppendSign(dst, f.Payload)
	}
	return dst, nil
}

// AppendFrameV1 appends the version-1 encoding of f to dst and returns the
// extended buffer: the frame as [AppendFrame] writes it, then, when m is
// non-nil, the 32-byte tag of f in direction dir ([FrameMAC.AppendSign];
// f.MAC is ignored). With m nil no tag is written: an unkeyed version-1
// frame is byte for byte a version-0 one. It refuses request text over 255
// bytes; dst is returned unchanged on error.
func AppendFrameV1(dst []byte, f Frame, m *FrameMAC, dir Direction) ([]byte, error) {
	var h [HeaderLen]byte
	if err := PutHeader(h[:], f.Status, f.Seq, len(f.Request), len(f.Payload)); err != nil {
		return dst, err
	}
	extra := 0
	if m != nil {
		extra = TagLen
	}
	dst = appendBody(dst, &h, f, extra)
	if m != nil {
		dst = m.appendTag(dst, dir, &h, f)
	}
	return dst, nil
}

// appendBody appends header h, f's request and f's payload to dst, growing
// it once with room for extra more bytes (the MAC that follows).
func appendBody(dst []byte, h *[HeaderLen]byte, f Frame, extra int) []byte {
	dst = slices.Grow(dst, HeaderLen+len(f.Request)+len(f.Payload)+extra) // at most one reallocation
	dst = append(dst, h[:]...)
	dst = append(dst, f.Request...)
	return append(dst, f.Payload...)
}

// Buffers holds the pieces of one encoded frame for a vectored write
// (writev): the header and MAC live inside the struct, the request and
// payload alias the caller's slices. Reuse one Buffers per connection to
// frame without allocating.
type Buffers struct {
	header [HeaderLen]byte
	mac    [MACLen]byte // a version-0 MAC, or a version-1 tag in its first TagLen bytes
	vec    [4][]byte
}

// Frame fills b for f, signing with m when m is non-nil, and returns the
// slices to write in order (header, then request, payload and MAC where not
// empty). The returned slice aliases b: it is valid until b is reused.
func (b *Buffers) Frame(f Frame, m *MAC) ([][]byte, error) {
	v, err := b.body(f)
	if err != nil {
		return nil, err
	}
	if m != nil {
		m.AppendSign(b.mac[:0], f.Payload)
		v = append(v, b.mac[:])
	}
	return v, nil
}

// FrameV1 is [Buffers.Frame] for a version-1 session: when m is non-nil the
// last slice is the 32-byte tag of f in direction dir
// ([FrameMAC.AppendSign]); with m nil no tag is written. It does not
// allocate. The returned slice aliases b: it is valid until b is reused.
func (b *Buffers) FrameV1(f Frame, m *FrameMAC, dir Direction) ([][]byte, error) {
	v, err := b.body(f)
	if err != nil {
		return nil, err
	}
	if m != nil {
		m.appendTag(b.mac[:0], dir, &b.header, f)
		v = append(v, b.mac[:TagLen])
	}
	return v, nil
}

// body encodes f's header into b and returns b's vector holding the header,
// then the request and payload where not empty.
func (b *Buffers) body(f Frame) ([][]byte, error) {
	if err := PutHeader(b.header[:], f.Status, f.Seq, len(f.Request), len(f.Payload)); err != nil {
		return nil, err
	}
	v := b.vec[:0]
	v = append(v, b.header[:])
	if len(f.Request) > 0 {
		v = append(v, f.Request)
	}
	if len(f.Payload) > 0 {
		v = append(v, f.Payload)
	}
	return v, nil
}

// Len returns the total number of bytes in the version-0 encoding of f, with
// a 44-byte MAC when mac is set. See [Options.FrameLen] for version 1.
func Len(f Frame, mac bool) int {
	n := HeaderLen + len(f.Request) + len(f.Payload)
	if mac {
		n += MACLen
	}
	return n
}
