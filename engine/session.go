package engine

import (
	"crypto/rand"
	"log/slog"
	"math"

	"github.com/petrel-rpc/petrel/codec"
)

// randRead fills b with random bytes for the server's PROTOCHECK nonces. A
// variable so that tests can make it fail (crypto/rand itself no longer
// returns errors); read once per version-1 negotiation.
var randRead = rand.Read

// afterAnswerWritten, when set (by tests), runs on a reactor worker after
// it has written an answer whole (plain and direct, or TLS) and before it
// gives the connection back.
var afterAnswerWritten func()

// beforeAsyncAnswer, when set (by tests), runs on a reactor worker before
// it hands (the rest of) a plain answer to gnet.
var beforeAsyncAnswer func()

// afterOrphaned, when set (by tests), runs on a reactor loop when a
// half-closed connection has been given a duplicate descriptor to finish
// on.
var afterOrphaned func()

// Static payloads of the negotiation's answers.
var (
	protoV0        = []byte{codec.ProtocolV0} // 200 to a version-0 PROTOCHECK
	protoHighest   = []byte{codec.ProtocolV1} // 497: the highest version this server speaks
	reasonSeq      = []byte("sequence number out of order")
	reasonLate     = []byte("PROTOCHECK after the session began")
	reasonNeedV1   = []byte{codec.ProtocolV1} // 497 to a session that skips or downgrades under MinProtocol 1
	reasonNoRandom = []byte("cannot make a nonce")
	reasonSeqEnd   = []byte("sequence numbers exhausted: redial")
	reasonClosed   = []byte("session refused")
)

// Session states (session.phase).
const (
	sessNew    uint8 = iota // no frame yet
	sessV0                  // a version-0 session
	sessV1                  // a version-1 session
	sessClosed              // refused: nothing more is accepted
)

// verify checks frame f against the session's MAC and, on version 1, its
// sequence rule, and returns the refusal to answer (closing) when f fails:
// 502 for a MAC that does not verify or, when keyed, a broken seq; 498 for
// a broken seq unkeyed. ok is true when f may be served.
func (s *session) verify(x *exchange, f codec.Frame) (r result, ok bool) {
	if s.sess == sessClosed {
		return s.refuse(codec.StatusReadError, reasonClosed), false
	}
	if s.ver == codec.ProtocolV0 {
		if x.mac != nil {
			if err := x.mac.Verify(f.Payload, f.MAC); err != nil {
				s.logRefusal(f, codec.StatusBadMAC, "petrel: HMAC verification failed")
				return s.refuse(codec.StatusBadMAC, reasonBadMAC), false
			}
		}
		return result{}, true
	}
	if s.fmac != nil {
		if err := s.fmac.Verify(codec.ClientToServer, f); err != nil {
			s.logRefusal(f, codec.StatusBadMAC, "petrel: HMAC verification failed")
			return s.refuse(codec.StatusBadMAC, reasonBadMAC), false
		}
	}
	if st, reason, broken := s.seqBroken(f.Seq); broken {
		return s.refuse(st, reason), false
	}
	s.seq = f.Seq
	s.seqDone = f.Seq == math.MaxUint32
	return result{}, true
}

// seqBroken reports whether a version-1 request with this seq breaks the
// sequence rule, with the refusal that answers it (502 keyed, 498 not),
// and logs it. It is false outside a version-1 session.
func (s *session) seqBroken(seq uint32) (st codec.Status, reason []byte, broken bool) {
	if s.sess != sessV1 || (!s.seqDone && seq == s.seq+1) {
		return 0, nil, false
	}
	st = codec.StatusReadError
	if s.fmac != nil {
		st = codec.StatusBadMAC
	}
	if srv := s.srv; srv.logOn(slog.LevelWarn) {
		srv.logRated("refusal", slog.LevelWarn, "petrel: request out of sequence (replay or reorder)",
			"conn", s.id, "remote", s.remote, "status", int(st), "seq", seq, "want", uint64(s.seq)+1)
	}
	if s.seqDone {
		return st, reasonSeqEnd, true
	}
	return st, reasonSeq, true
}

// refuse ends the session with a library refusal: the answer is sent, then
// the connection closed, and nothing more is accepted on it.
func (s *session) refuse(st codec.Status, reason []byte) result {
	s.sess = sessClosed
	return result{status: st, payload: reason, closes: true}
}

func (s *session) logRefusal(f codec.Frame, st codec.Status, msg string) {
	if s.srv.logOn(st.Level()) {
		s.srv.logRated("refusal", st.Level(), msg, "conn", s.id, "remote", s.remote,
			"status", int(st), "seq", f.Seq, "version", int(s.ver))
	}
}

// begin handles a frame that is not a PROTOCHECK: as the first of a
// session (phase new), a version-0 session begins, unless the server
// requires version 1 (then 497 with 0x01, and close). Later frames pass.
func (s *session) begin(f codec.Frame) (result, bool) {
	if s.sess != sessNew {
		return result{}, true
	}
	if s.srv.cfg.MinProtocol >= codec.ProtocolV1 {
		s.logRefusal(f, codec.StatusVersionMismatch, "petrel: version-0 session refused (MinProtocol 1)")
		return s.refuse(codec.StatusVersionMismatch, reasonNeedV1), false
	}
	s.startV0()
	return result{}, true
}

func (s *session) startV0() {
	s.sess = sessV0
	s.srv.stats.sessions[codec.ProtocolV0].Add(1)
}

// protoCheck answers a PROTOCHECK. As a session's first frame it
// negotiates: version 0 is answered 200 0x00 (497 0x01 and close under
// MinProtocol 1), version 1 is answered 200 with 0x01 and a fresh server
// nonce and the session switches to version 1 (keyed: under the session
// key) from the next frame on; a malformed payload or an unknown version
// is answered 497 with 0x01, and closed. Later in a version-0 session a
// version-0 PROTOCHECK is answered 200 0x00 as before (classic clients may
// repeat it) and a malformed one 497 as above, while a version-1
// PROTOCHECK is refused with 498 and closed: sessions do not renegotiate.
// In a version-1 session every PROTOCHECK is refused so. The answer to the negotiating PROTOCHECK is
// framed as version 0 (with a version-0 MAC when keyed).
func (s *session) protoCheck(x *exchange, f codec.Frame) result {
	srv := s.srv
	v, nonce, err := codec.ParseProtoCheck(f.Payload)
	late := s.sess != sessNew
	switch {
	case late && (s.ver != codec.ProtocolV0 || (err == nil && v == codec.ProtocolV1)):
		s.logRefusal(f, codec.StatusReadError, "petrel: PROTOCHECK after the session began")
		return s.refuse(codec.StatusReadError, reasonLate)
	case late && err == nil && v == codec.ProtocolV0:
		return result{status: codec.StatusOK, payload: protoV0}
	case err != nil || v > codec.ProtocolV1:
		s.logRefusal(f, codec.StatusVersionMismatch, "petrel: PROTOCHECK for a version not spoken")
		return s.refuse(codec.StatusVersionMismatch, protoHighest)
	case v == codec.ProtocolV0:
		if srv.cfg.MinProtocol >= codec.ProtocolV1 {
			s.logRefusal(f, codec.StatusVersionMismatch, "petrel: version-0 session refused (MinProtocol 1)")
			return s.refuse(codec.StatusVersionMismatch, reasonNeedV1)
		}
		s.startV0()
		return result{status: codec.StatusOK, payload: protoV0}
	}
	// Version 1.
	p := x.proto[:0]
	p = append(p, codec.ProtocolV1)
	p = p[:1+codec.NonceLen]
	if _, err := randRead(p[1:]); err != nil {
		srv.log.Error("petrel: cannot make a session nonce", "conn", s.id, "status", int(codec.StatusInternalError), "err", err)
		return s.refuse(codec.StatusInternalError, reasonNoRandom)
	}
	if len(srv.cfg.HMACKey) > 0 {
		k := codec.SessionKey(srv.cfg.HMACKey, nonce, p[1:])
		s.fmac = codec.NewFrameMAC(k[:])
	}
	s.sess = sessV1
	s.ver = codec.ProtocolV1
	s.seq = f.Seq
	s.seqDone = f.Seq == math.MaxUint32
	srv.stats.sessions[codec.ProtocolV1].Add(1)
	return result{status: codec.StatusOK, payload: p, asV0: true}
}
