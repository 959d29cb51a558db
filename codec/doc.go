// Package codec encodes and decodes Petrel wire frames, protocol versions 0
// and 1, without copying and without allocating.
//
// A frame is an 11-byte little-endian header (status uint16, seq uint32,
// request length uint8, payload length uint32), the request text, the
// payload and, when both ends were configured with an HMAC key, a MAC. The
// two versions differ only in that MAC:
//
//   - Version 0, the classic protocol, appends the 44-byte standard base64
//     encoding of HMAC-SHA256(key, payload): only the payload is covered.
//     [MAC] computes it.
//   - Version 1, negotiated in the PROTOCHECK exchange ([AppendProtoCheck],
//     [ParseProtoCheck]), appends a raw 32-byte tag computed under a
//     per-session key ([SessionKey]) over a direction byte, the header, the
//     request text and the payload. [FrameMAC] computes it.
//
// [Parse] decodes in place: the request text, payload and MAC of the
// returned [Frame] are sub-slices of the caller's buffer and are valid only
// as long as that buffer is. Given an incomplete frame, Parse consumes
// nothing, allocates nothing and reports how many more bytes it needs, which
// is what a reactor that peeks at its inbound buffer wants. A payload longer
// than the configured limit is refused from the header alone, before any of
// it is read. [Options] says which version's MAC, if any, follows a frame.
//
// [AppendFrame] and [AppendFrameV1] encode by appending to a caller's
// buffer, and [Buffers.Frame] and [Buffers.FrameV1] encode as header,
// request, payload and MAC slices for vectored writes, so a large payload is
// never copied just to be framed.
//
// [MAC] and [FrameMAC] reuse their hash state; neither is safe for
// concurrent use.
//
// The wire contract, including the negotiation, the sequence rule and the
// status codes, is docs/PROTOCOL.md in the repository
// (https://github.com/petrel-rpc/petrel/blob/main/docs/PROTOCOL.md).
package codec
