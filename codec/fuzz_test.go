package codec_test

import (
	"bytes"
	"errors"
	"testing"

	"github.com/petrel-rpc/petrel/codec"
)

// fuzzKey is the HMAC key the fuzz targets sign with.
var fuzzKey = []byte("fuzz key")

// maxFeed bounds how many missing bytes FuzzParse supplies to check that
// need was right; beyond it the check is skipped rather than allocate
// gigabytes for a declared length.
const maxFeed = 1 << 20

// FuzzParse feeds arbitrary bytes to Parse, with and without MACs, under
// arbitrary limits, and checks that its answers are consistent.
func FuzzParse(f *testing.F) {
	m := codec.NewMAC(fuzzKey)
	for _, fr := range frameCases() {
		for _, mac := range []bool{false, true} {
			var sm *codec.MAC
			if mac {
				sm = m
			}
			buf, err := codec.AppendFrame(nil, fr, sm)
			if err != nil {
				f.Fatal(err)
			}
			f.Add(buf, mac, uint32(0))
			f.Add(buf, mac, uint32(len(fr.Payload)))
			if len(fr.Payload) > 0 {
				f.Add(buf, mac, uint32(len(fr.Payload)-1))
			}
			f.Add(buf[:len(buf)-1], mac, uint32(0))
			f.Add(buf[:min(len(buf), codec.HeaderLen-1)], mac, uint32(0))
			f.Add(append(bytes.Clone(buf), buf...), mac, uint32(0))
		}
	}
	f.Add(header(0, 1, 0, codec.DefaultMaxPayload+1), false, uint32(0))
	f.Add(header(0xFFFF, 0xFFFFFFFF, 255, 0xFFFFFFFF), true, uint32(0xFFFFFFFF))
	f.Add([]byte{}, false, uint32(0))

	f.Fuzz(func(t *testing.T, buf []byte, mac bool, limit uint32) {
		o := codec.Options{MAC: mac, MaxPayload: limit}
		orig := bytes.Clone(buf)
		fr, n, need := checkParse(t, buf, o)
		if !bytes.Equal(buf, orig) {
			t.Fatalf("Parse modified its input")
		}
		if n > 0 {
			// The frame re-encodes to the bytes it was parsed from.
			again, err := codec.AppendFrame(nil, fr, nil)
			if err != nil {
				t.Fatalf("AppendFrame of a parsed frame: %v", err)
			}
			if mac {
				again = append(again, fr.MAC...)
			}
			if !bytes.Equal(again, buf[:n]) {
				t.Fatalf("re-encoded frame differs from its input")
			}
			// The rest of the buffer is parsed on its own terms.
			checkParse(t, buf[n:], o)
			return
		}
		if need == 0 || need > maxFeed {
			return
		}
		// Supplying exactly the missing bytes either completes the frame
		// (header already there) or completes the header.
		more := append(bytes.Clone(buf), make([]byte, need)...)
		_, n2, need2, err2 := codec.Parse(more, o)
		if len(buf) >= codec.HeaderLen {
			if n2 != len(more) || need2 != 0 || err2 != nil {
				t.Fatalf("after feeding the %d missing bytes: n %d, need %d, %v; want n %d", need, n2, need2, err2, len(more))
			}
			return
		}
		if len(more) != codec.HeaderLen {
			t.Fatalf("need %d with %d bytes does not reach the header's end", need, len(buf))
		}
		checkParse(t, more, o)
	})
}

// checkParse parses buf and checks Parse's invariants under o, either
// version.
func checkParse(t *testing.T, buf []byte, o codec.Options) (codec.Frame, int, int) {
	t.Helper()
	fr, n, need, err := codec.Parse(buf, o)
	if n < 0 || n > len(buf) || need < 0 {
		t.Fatalf("Parse(%d bytes) = n %d, need %d", len(buf), n, need)
	}
	if err != nil {
		var le *codec.LimitError
		if !errors.As(err, &le) || !errors.Is(err, codec.ErrPayloadTooLarge) {
			t.Fatalf("Parse error %v (%T) is not a *LimitError", err, err)
		}
		if n != 0 || need != 0 {
			t.Fatalf("Parse error with n %d, need %d", n, need)
		}
		if len(buf) < codec.HeaderLen {
			t.Fatalf("Parse refused a %d-byte partial header", len(buf))
		}
		h, _ := codec.ParseHeader(buf)
		if le.Declared != uint64(h.PayloadLen) || le.Limit != uint64(o.Limit()) || le.Declared <= le.Limit {
			t.Fatalf("LimitError %d > %d for header %+v, limit %d", le.Declared, le.Limit, h, o.Limit())
		}
		return fr, n, need
	}
	if n == 0 {
		if need <= 0 {
			t.Fatalf("Parse(%d bytes) = n 0, need %d, nil", len(buf), need)
		}
		want := codec.HeaderLen - len(buf)
		if len(buf) >= codec.HeaderLen {
			h, _ := codec.ParseHeader(buf)
			if h.PayloadLen > o.Limit() {
				t.Fatalf("Parse accepted a payload of %d over the limit %d", h.PayloadLen, o.Limit())
			}
			want = o.FrameLen(h) - len(buf)
		}
		if need != want {
			t.Fatalf("Parse(%d bytes) need = %d, want %d", len(buf), need, want)
		}
		return fr, n, need
	}

	// A whole frame.
	if need != 0 {
		t.Fatalf("Parse returned a frame and need %d", need)
	}
	h, _ := codec.ParseHeader(buf)
	if h.PayloadLen > o.Limit() {
		t.Fatalf("Parse accepted a payload of %d over the limit %d", h.PayloadLen, o.Limit())
	}
	if n != o.FrameLen(h) {
		t.Fatalf("n = %d, header says %d", n, o.FrameLen(h))
	}
	if fr.Status != h.Status || fr.Seq != h.Seq || len(fr.Request) != int(h.RequestLen) || len(fr.Payload) != int(h.PayloadLen) {
		t.Fatalf("frame %+v disagrees with header %+v", fr, h)
	}
	// Each slice lies where the header puts it, inside buf[:n], with its
	// capacity capped at its end.
	within(t, "request", buf, fr.Request, codec.HeaderLen, n)
	within(t, "payload", buf, fr.Payload, codec.HeaderLen+len(fr.Request), n)
	if o.MAC {
		if len(fr.MAC) != o.MACLen() {
			t.Fatalf("MAC is %d bytes, want %d", len(fr.MAC), o.MACLen())
		}
		within(t, "MAC", buf, fr.MAC, n-o.MACLen(), n)
	} else if fr.MAC != nil {
		t.Fatalf("MAC %q with MACs off", fr.MAC)
	}
	return fr, n, need
}

// within checks that s is buf[at:at+len(s)], capacity capped, and ends by
// buf[:n].
func within(t *testing.T, name string, buf, s []byte, at, n int) {
	t.Helper()
	if cap(s) != len(s) {
		t.Fatalf("%s: cap %d, len %d", name, cap(s), len(s))
	}
	if at+len(s) > n {
		t.Fatalf("%s: ends at %d, past the frame's %d bytes", name, at+len(s), n)
	}
	if len(s) > 0 && &s[0] != &buf[at] {
		t.Fatalf("%s does not alias buf[%d]", name, at)
	}
}

// FuzzRoundTrip encodes arbitrary frames and checks that Parse returns
// them unchanged and that their MAC verifies.
func FuzzRoundTrip(f *testing.F) {
	for _, fr := range frameCases() {
		f.Add(uint16(fr.Status), fr.Seq, fr.Request, fr.Payload, false)
		f.Add(uint16(fr.Status), fr.Seq, fr.Request, fr.Payload, true)
	}
	f.Add(uint16(0), uint32(0), bytes.Repeat([]byte{'x'}, 256), []byte("too long"), false)

	m := codec.NewMAC(fuzzKey)
	f.Fuzz(func(t *testing.T, status uint16, seq uint32, request, payload []byte, mac bool) {
		var sm *codec.MAC
		if mac {
			sm = m
		}
		in := codec.Frame{Status: codec.Status(status), Seq: seq, Request: request, Payload: payload}
		var b codec.Buffers
		vec, verr := b.Frame(in, sm)
		buf, err := codec.AppendFrame(nil, in, sm)
		if len(request) > codec.MaxRequestLen {
			if !errors.Is(err, codec.ErrRequestTooLong) || buf != nil {
				t.Fatalf("AppendFrame(%d-byte request) = %d bytes, %v; want ErrRequestTooLong", len(request), len(buf), err)
			}
			if !errors.Is(verr, codec.ErrRequestTooLong) || vec != nil {
				t.Fatalf("Buffers.Frame(%d-byte request) = %v; want ErrRequestTooLong", len(request), verr)
			}
			return
		}
		if err != nil || verr != nil {
			t.Fatalf("AppendFrame: %v; Buffers.Frame: %v", err, verr)
		}
		if len(buf) != codec.Len(in, mac) {
			t.Fatalf("encoded %d bytes, Len says %d", len(buf), codec.Len(in, mac))
		}
		if !bytes.Equal(bytes.Join(vec, nil), buf) {
			t.Fatalf("Buffers.Frame and AppendFrame disagree")
		}

		// The smallest limit that admits the payload.
		o := codec.Options{MAC: mac, MaxPayload: uint32(len(payload))}
		out, n, need, err := codec.Parse(buf, o)
		if err != nil || n != len(buf) || need != 0 {
			t.Fatalf("Parse = n %d, need %d, %v; want n %d", n, need, err, len(buf))
		}
		checkFields(t, out, in)
		if mac {
			if err := m.Clone().Verify(out.Payload, out.MAC); err != nil {
				t.Fatalf("Verify: %v", err)
			}
		}

		// One byte less of limit refuses it from the header alone.
		if len(payload) > 1 {
			o.MaxPayload = uint32(len(payload) - 1)
			_, _, _, err := codec.Parse(buf[:codec.HeaderLen], o)
			if !errors.Is(err, codec.ErrPayloadTooLarge) {
				t.Fatalf("Parse under limit %d of a %d-byte payload: %v", o.MaxPayload, len(payload), err)
			}
		}
	})
}
