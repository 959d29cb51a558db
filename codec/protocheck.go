package codec

import "strconv"

// protoCheckV1Len is the length of a version-1 PROTOCHECK payload: the
// version byte and the nonce.
const protoCheckV1Len = 1 + NonceLen

// AppendProtoCheck appends a PROTOCHECK payload to dst: for version 0 the
// single byte 0x00 (nonce ignored); for version 1, 0x01 followed by the
// [NonceLen]-byte nonce. A version-1 request carries the client's nonce, a
// version-1 answer the server's.
//
// For versions other than 0, nonce is appended as given after the version
// byte, unchecked: a 497 answer, whose payload is only the answering
// server's highest version, is AppendProtoCheck(dst, v, nil).
func AppendProtoCheck(dst []byte, version uint8, nonce []byte) []byte {
	dst = append(dst, version)
	if version == ProtocolV0 {
		return dst
	}
	return append(dst, nonce...)
}

// ParseProtoCheck reads the payload of a PROTOCHECK request or of its 200
// answer: the version byte and, for version 1, the [NonceLen]-byte nonce,
// which aliases p. An empty payload, a version-1 payload whose length is
// not 17, or a version-0 payload longer than 1 byte is malformed: the error
// wraps [ErrBadProtoCheck] (status 497). A version of 2 or more is returned
// with a nil nonce and no error, whatever follows it: the caller answers
// 497 with the highest version it speaks. On error, version is p's first
// byte (0 for an empty p) and nonce is nil.
//
// A 497 answer's payload is a single version byte; read it as p[0] rather
// than with ParseProtoCheck, which refuses a lone 0x01.
func ParseProtoCheck(p []byte) (version uint8, nonce []byte, err error) {
	if len(p) == 0 {
		return 0, nil, badProtoCheck("empty payload")
	}
	switch v := p[0]; v {
	case ProtocolV0:
		if len(p) != 1 {
			return v, nil, badProtoCheck("version 0 payload of " + strconv.Itoa(len(p)) + " bytes, want 1")
		}
		return v, nil, nil
	case ProtocolV1:
		if len(p) != protoCheckV1Len {
			return v, nil, badProtoCheck("version 1 payload of " + strconv.Itoa(len(p)) + " bytes, want 17")
		}
		return v, p[1:protoCheckV1Len:protoCheckV1Len], nil
	default:
		return v, nil, nil
	}
}
