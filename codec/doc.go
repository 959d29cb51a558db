// Package codec encodes and decodes Petrel wire frames (protocol version 0)
// without copying and without allocating.
//
// A frame is an 11-byte little-endian header (status uint16, seq uint32,
// request length uint8, payload length uint32), the request text, the
// payload, and, when both ends were configured with an HMAC key, the 44-byte
// standard base64 encoding of HMAC-SHA256(key, payload).
//
// [Parse] decodes in place: the request text and payload of the returned
// [Frame] are sub-slices of the caller's buffer and are valid only as long as
// that buffer is. Given an incomplete frame, Parse consumes nothing,
// allocates nothing and reports how many more bytes it needs, which is what a
// reactor that peeks at its inbound buffer wants. A payload longer than the
// configured limit is refused from the header alone, before any of it is
// read.
//
// [AppendFrame] encodes by appending to a caller's buffer, and
// [Buffers.Frame] encodes as a header, request, payload and MAC slices for
// vectored writes, so a large payload is never copied just to be framed.
//
// [MAC] signs and verifies payloads, reusing its hash state; it is not safe
// for concurrent use.
package codec
