package codec_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"

	"github.com/petrel-rpc/petrel/codec"
)

// testKey is the HMAC key the frame tests sign with.
var testKey = []byte("petrel test key")

// encode returns the encoding of f, signed with m when m is non-nil, and
// fails the test if AppendFrame refuses it.
func encode(tb testing.TB, f codec.Frame, m *codec.MAC) []byte {
	tb.Helper()
	b, err := codec.AppendFrame(nil, f, m)
	if err != nil {
		tb.Fatalf("AppendFrame(req %d bytes, payload %d bytes): %v", len(f.Request), len(f.Payload), err)
	}
	return b
}

// macFor returns a MAC under testKey when mac is set, and nil otherwise.
func macFor(mac bool) *codec.MAC {
	if !mac {
		return nil
	}
	return codec.NewMAC(testKey)
}

// fill returns n bytes of a repeating, position-dependent pattern, so a
// misplaced slice shows up as a content mismatch.
func fill(n int, seed byte) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = seed + byte(i*7)
	}
	return b
}

// header returns a hand-built 11-byte header.
func header(status uint16, seq uint32, reqLen uint8, payLen uint32) []byte {
	h := make([]byte, codec.HeaderLen)
	binary.LittleEndian.PutUint16(h[0:2], status)
	binary.LittleEndian.PutUint32(h[2:6], seq)
	h[6] = reqLen
	binary.LittleEndian.PutUint32(h[7:11], payLen)
	return h
}

// parseWhole parses buf, which must hold exactly one whole frame, and
// checks the frame against want (MAC excepted, which it checks against m).
func parseWhole(tb testing.TB, buf []byte, o codec.Options, want codec.Frame, m *codec.MAC) codec.Frame {
	tb.Helper()
	f, n, need, err := codec.Parse(buf, o)
	if err != nil || n != len(buf) || need != 0 {
		tb.Fatalf("Parse(%d bytes) = n %d, need %d, err %v; want n %d, need 0, nil", len(buf), n, need, err, len(buf))
	}
	checkFields(tb, f, want)
	if o.MAC {
		if len(f.MAC) != codec.MACLen {
			tb.Fatalf("MAC is %d bytes, want %d", len(f.MAC), codec.MACLen)
		}
		if m != nil {
			if err := m.Verify(f.Payload, f.MAC); err != nil {
				tb.Fatalf("Verify of a parsed frame: %v", err)
			}
		}
	} else if f.MAC != nil {
		tb.Fatalf("MAC = %q with MACs off, want nil", f.MAC)
	}
	return f
}

// checkFields compares status, seq, request and payload.
func checkFields(tb testing.TB, got, want codec.Frame) {
	tb.Helper()
	if got.Status != want.Status || got.Seq != want.Seq {
		tb.Errorf("status, seq = %d, %d; want %d, %d", got.Status, got.Seq, want.Status, want.Seq)
	}
	if !bytes.Equal(got.Request, want.Request) {
		tb.Errorf("request = %q, want %q", got.Request, want.Request)
	}
	if !bytes.Equal(got.Payload, want.Payload) {
		tb.Errorf("payload differs: got %d bytes, want %d", len(got.Payload), len(want.Payload))
	}
}

func TestRequestLength(t *testing.T) {
	for _, n := range []int{0, 1, 10, 254, 255} {
		for _, mac := range []bool{false, true} {
			t.Run(fmt.Sprintf("len=%d/mac=%v", n, mac), func(t *testing.T) {
				m := macFor(mac)
				f := codec.Frame{Status: codec.StatusOK, Seq: 9, Request: fill(n, 'a'), Payload: []byte("p")}
				buf := encode(t, f, m)
				if got, want := len(buf), codec.Len(f, mac); got != want {
					t.Fatalf("encoded %d bytes, Len says %d", got, want)
				}
				if buf[6] != byte(n) {
					t.Fatalf("request length byte = %d, want %d", buf[6], n)
				}
				parseWhole(t, buf, codec.Options{MAC: mac}, f, m)

				var b codec.Buffers
				vec, err := b.Frame(f, m)
				if err != nil {
					t.Fatalf("Buffers.Frame: %v", err)
				}
				if got := bytes.Join(vec, nil); !bytes.Equal(got, buf) {
					t.Fatalf("Buffers.Frame gives % x, AppendFrame % x", got, buf)
				}
			})
		}
	}
}

func TestRequestTooLong(t *testing.T) {
	for _, n := range []int{256, 257, 1000} {
		for _, mac := range []bool{false, true} {
			t.Run(fmt.Sprintf("len=%d/mac=%v", n, mac), func(t *testing.T) {
				m := macFor(mac)
				f := codec.Frame{Request: fill(n, 'a'), Payload: []byte("p")}
				dst := append(make([]byte, 0, 64), "prefix"...)
				got, err := codec.AppendFrame(dst, f, m)
				if !errors.Is(err, codec.ErrRequestTooLong) {
					t.Fatalf("AppendFrame error = %v, want ErrRequestTooLong", err)
				}
				if string(got) != "prefix" || &got[0] != &dst[0] {
					t.Fatalf("AppendFrame returned %q, want dst unchanged", got)
				}

				var b codec.Buffers
				vec, err := b.Frame(f, m)
				if !errors.Is(err, codec.ErrRequestTooLong) || vec != nil {
					t.Fatalf("Buffers.Frame = %d slices, %v; want nil, ErrRequestTooLong", len(vec), err)
				}
			})
		}
	}
}

// checkLimitError checks that err is the refusal of a declared payload
// length over limit.
func checkLimitError(tb testing.TB, err error, declared, limit uint64) {
	tb.Helper()
	if !errors.Is(err, codec.ErrPayloadTooLarge) {
		tb.Fatalf("error = %v, want ErrPayloadTooLarge", err)
	}
	var le *codec.LimitError
	if !errors.As(err, &le) {
		tb.Fatalf("error %v (%T) is not a *LimitError", err, err)
	}
	if le.Declared != declared || le.Limit != limit {
		tb.Errorf("LimitError = %d > %d, want %d > %d", le.Declared, le.Limit, declared, limit)
	}
	if got, want := le.Reason(), fmt.Sprintf("%d > %d", declared, limit); got != want {
		tb.Errorf("Reason() = %q, want %q", got, want)
	}
	if got := codec.StatusOf(err); got != codec.StatusPayloadTooLarge {
		tb.Errorf("StatusOf = %d, want 402", got)
	}
	if got := le.Status(); got != codec.StatusPayloadTooLarge {
		tb.Errorf("Status() = %d, want 402", got)
	}
	if errors.Is(err, codec.ErrBadMAC) || errors.Is(err, codec.ErrRequestTooLong) {
		tb.Errorf("LimitError matches an unrelated sentinel")
	}
}

func TestPayloadLimit(t *testing.T) {
	tests := []struct {
		name  string
		max   uint32 // Options.MaxPayload
		limit uint32 // the limit in force
	}{
		{"default", 0, codec.DefaultMaxPayload},
		{"one", 1, 1},
		{"custom", 1000, 1000},
		{"above-default", codec.DefaultMaxPayload + 5, codec.DefaultMaxPayload + 5},
	}
	for _, tt := range tests {
		for _, mac := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/mac=%v", tt.name, mac), func(t *testing.T) {
				o := codec.Options{MaxPayload: tt.max, MAC: mac}
				if got := o.Limit(); got != tt.limit {
					t.Fatalf("Limit() = %d, want %d", got, tt.limit)
				}
				m := macFor(mac)

				// Empty and limit-sized payloads are accepted.
				for _, size := range []uint32{0, tt.limit} {
					f := codec.Frame{Seq: 1, Request: []byte("r"), Payload: fill(int(size), 3)}
					parseWhole(t, encode(t, f, m), o, f, m)
				}

				// One byte over is refused from the header alone, and from
				// every longer prefix of the frame.
				f := codec.Frame{Seq: 2, Request: []byte("r"), Payload: make([]byte, tt.limit+1)}
				buf := encode(t, f, m)
				for _, cut := range []int{codec.HeaderLen, codec.HeaderLen + 1, codec.HeaderLen + 2, len(buf) - 1, len(buf)} {
					got, n, need, err := codec.Parse(buf[:cut], o)
					if n != 0 || need != 0 || got.Request != nil || got.Payload != nil {
						t.Fatalf("Parse(%d of %d bytes) = n %d, need %d, frame %+v; want all zero", cut, len(buf), n, need, got)
					}
					checkLimitError(t, err, uint64(tt.limit)+1, uint64(tt.limit))
				}

				// Before the header is complete there is nothing to refuse.
				for cut := range codec.HeaderLen {
					_, n, need, err := codec.Parse(buf[:cut], o)
					if n != 0 || need != codec.HeaderLen-cut || err != nil {
						t.Fatalf("Parse(%d header bytes) = n %d, need %d, %v; want 0, %d, nil", cut, n, need, err, codec.HeaderLen-cut)
					}
				}
			})
		}
	}
}

// TestPayloadLimitHeaderOnly refuses huge declared lengths from a bare
// header, without anything of the payload present.
func TestPayloadLimitHeaderOnly(t *testing.T) {
	tests := []struct {
		max      uint32
		declared uint32
	}{
		{0, codec.DefaultMaxPayload + 1},
		{0, 0xFFFFFFFF},
		{16, 17},
		{16, 1 << 31},
		{0xFFFFFFFE, 0xFFFFFFFF},
	}
	for _, tt := range tests {
		for _, mac := range []bool{false, true} {
			o := codec.Options{MaxPayload: tt.max, MAC: mac}
			_, n, need, err := codec.Parse(header(0, 1, 255, tt.declared), o)
			if n != 0 || need != 0 {
				t.Errorf("max %d, declared %d: n %d, need %d; want 0, 0", tt.max, tt.declared, n, need)
			}
			checkLimitError(t, err, uint64(tt.declared), uint64(o.Limit()))
		}
	}
}

// TestPayloadLimitMax accepts a header declaring 4 GiB - 1 bytes under the
// largest limit, and asks for the rest without allocating it.
func TestPayloadLimitMax(t *testing.T) {
	for _, mac := range []bool{false, true} {
		o := codec.Options{MaxPayload: 0xFFFFFFFF, MAC: mac}
		h := header(0, 1, 3, 0xFFFFFFFF)
		_, n, need, err := codec.Parse(h, o)
		want := 3 + 0xFFFFFFFF
		if mac {
			want += codec.MACLen
		}
		if n != 0 || need != want || err != nil {
			t.Errorf("mac %v: n %d, need %d, %v; want 0, %d, nil", mac, n, need, err, want)
		}
	}
}

// frameCases are frames of assorted shapes, including empty request text
// and empty payload.
func frameCases() []codec.Frame {
	return []codec.Frame{
		{},
		{Status: codec.StatusOK, Seq: 1},
		{Seq: 2, Request: []byte("PROTOCHECK"), Payload: []byte{codec.ProtocolVersion}},
		{Seq: 3, Request: []byte("echo")},
		{Status: 1025, Seq: 4, Payload: fill(5, 1)},
		{Status: 0xFFFF, Seq: 0xFFFFFFFF, Request: fill(255, 'A'), Payload: fill(300, 9)},
	}
}

func TestParseEveryCut(t *testing.T) {
	for i, f := range frameCases() {
		for _, mac := range []bool{false, true} {
			t.Run(fmt.Sprintf("frame=%d/mac=%v", i, mac), func(t *testing.T) {
				m := macFor(mac)
				o := codec.Options{MAC: mac}
				buf := encode(t, f, m)
				for cut := range len(buf) {
					// Copy the prefix so that reading past it would show
					// under the race detector or as wrong content.
					part := bytes.Clone(buf[:cut])
					want := len(buf) - cut
					if cut < codec.HeaderLen {
						want = codec.HeaderLen - cut
					}
					got, n, need, err := codec.Parse(part, o)
					if n != 0 || need != want || err != nil {
						t.Fatalf("Parse(%d of %d bytes) = n %d, need %d, %v; want 0, %d, nil", cut, len(buf), n, need, err, want)
					}
					if got.Request != nil || got.Payload != nil || got.MAC != nil || got.Status != 0 || got.Seq != 0 {
						t.Fatalf("Parse(%d of %d bytes) returned a frame %+v", cut, len(buf), got)
					}
				}
				parseWhole(t, buf, o, f, m)
			})
		}
	}
}

// TestParseStream feeds a stream of frames to a reader that parses what it
// has, consumes whole frames and waits for more, as a reactor would.
func TestParseStream(t *testing.T) {
	for _, mac := range []bool{false, true} {
		for _, chunk := range []int{1, 2, 7, 11, 64, 1 << 20} {
			t.Run(fmt.Sprintf("mac=%v/chunk=%d", mac, chunk), func(t *testing.T) {
				m := macFor(mac)
				o := codec.Options{MAC: mac}
				frames := frameCases()
				var stream []byte
				for _, f := range frames {
					stream = append(stream, encode(t, f, m)...)
				}
				var (
					inbound []byte
					got     int
				)
				for off := 0; off < len(stream); off += chunk {
					inbound = append(inbound, stream[off:min(off+chunk, len(stream))]...)
					for {
						f, n, need, err := codec.Parse(inbound, o)
						if err != nil {
							t.Fatalf("Parse: %v", err)
						}
						if n == 0 {
							if need <= 0 {
								t.Fatalf("n 0, need %d", need)
							}
							break
						}
						if got >= len(frames) {
							t.Fatalf("parsed more frames than were sent")
						}
						checkFields(t, f, frames[got])
						if mac {
							if err := m.Verify(f.Payload, f.MAC); err != nil {
								t.Fatalf("frame %d: %v", got, err)
							}
						}
						got++
						inbound = inbound[n:]
					}
				}
				if got != len(frames) || len(inbound) != 0 {
					t.Fatalf("parsed %d of %d frames, %d bytes left over", got, len(frames), len(inbound))
				}
			})
		}
	}
}

func TestParseBackToBack(t *testing.T) {
	for _, mac := range []bool{false, true} {
		m := macFor(mac)
		o := codec.Options{MAC: mac}
		frames := frameCases()
		var buf []byte
		for _, f := range frames {
			buf = append(buf, encode(t, f, m)...)
		}
		// A partial frame trails the whole ones.
		tail := encode(t, codec.Frame{Seq: 99, Request: []byte("tail"), Payload: []byte("tail payload")}, m)
		buf = append(buf, tail[:15]...)

		rest := buf
		for i, want := range frames {
			f, n, need, err := codec.Parse(rest, o)
			if err != nil || need != 0 || n != codec.Len(want, mac) {
				t.Fatalf("mac %v, frame %d: n %d, need %d, %v; want n %d", mac, i, n, need, err, codec.Len(want, mac))
			}
			checkFields(t, f, want)
			rest = rest[n:]
		}
		_, n, need, err := codec.Parse(rest, o)
		if n != 0 || need != len(tail)-15 || err != nil {
			t.Fatalf("mac %v, tail: n %d, need %d, %v; want 0, %d, nil", mac, n, need, err, len(tail)-15)
		}
	}
}

// TestWireVectors pins the byte layout with hand-written frames:
// little-endian status at 0..1, seq at 2..5, request length at 6, payload
// length at 7..10.
func TestWireVectors(t *testing.T) {
	tests := []struct {
		name  string
		frame codec.Frame
		wire  []byte
	}{
		{
			name:  "empty",
			frame: codec.Frame{},
			wire:  []byte{0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0},
		},
		{
			name:  "distinct bytes",
			frame: codec.Frame{Status: 0xBBAA, Seq: 0x44332211, Request: []byte("ab"), Payload: []byte("xyz")},
			wire: []byte{
				0xAA, 0xBB, // status
				0x11, 0x22, 0x33, 0x44, // seq
				0x02,                   // request length
				0x03, 0x00, 0x00, 0x00, // payload length
				'a', 'b',
				'x', 'y', 'z',
			},
		},
		{
			name:  "protocheck",
			frame: codec.Frame{Seq: 1, Request: []byte(codec.ProtoCheck), Payload: []byte{0}},
			wire: append([]byte{
				0x00, 0x00,
				0x01, 0x00, 0x00, 0x00,
				0x0A,
				0x01, 0x00, 0x00, 0x00,
			}, "PROTOCHECK\x00"...),
		},
		{
			name:  "answer 402",
			frame: codec.Frame{Status: codec.StatusPayloadTooLarge, Seq: 258, Request: []byte("x"), Payload: []byte("17 > 16")},
			wire: append([]byte{
				0x92, 0x01, // 402 = 0x0192
				0x02, 0x01, 0x00, 0x00, // 258 = 0x0102
				0x01,
				0x07, 0x00, 0x00, 0x00,
			}, "x17 > 16"...),
		},
		{
			name:  "max request",
			frame: codec.Frame{Status: 0xFFFF, Seq: 0xFFFFFFFF, Request: bytes.Repeat([]byte{'r'}, 255)},
			wire: append([]byte{
				0xFF, 0xFF,
				0xFF, 0xFF, 0xFF, 0xFF,
				0xFF,
				0x00, 0x00, 0x00, 0x00,
			}, strings.Repeat("r", 255)...),
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := encode(t, tt.frame, nil)
			if !bytes.Equal(got, tt.wire) {
				t.Fatalf("AppendFrame:\n got % x\nwant % x", got, tt.wire)
			}
			parseWhole(t, tt.wire, codec.Options{}, tt.frame, nil)
		})
	}
}

// TestHeaderVectors pins the header layout, including multi-byte payload
// lengths, through ParseHeader and PutHeader.
func TestHeaderVectors(t *testing.T) {
	wire := []byte{0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x09, 0x0A, 0x0B}
	want := codec.Header{Status: 0x0201, Seq: 0x06050403, RequestLen: 0x07, PayloadLen: 0x0B0A0908}
	h, err := codec.ParseHeader(wire)
	if err != nil || h != want {
		t.Fatalf("ParseHeader = %+v, %v; want %+v", h, err, want)
	}
	// Trailing bytes are not part of the header.
	if h, err := codec.ParseHeader(append(bytes.Clone(wire), 0xEE, 0xFF)); err != nil || h != want {
		t.Fatalf("ParseHeader with trailing bytes = %+v, %v; want %+v", h, err, want)
	}
	if got, want := h.FrameLen(false), 11+0x07+0x0B0A0908; got != want {
		t.Errorf("FrameLen(false) = %d, want %d", got, want)
	}
	if got, want := h.FrameLen(true), 11+0x07+0x0B0A0908+44; got != want {
		t.Errorf("FrameLen(true) = %d, want %d", got, want)
	}

	out := bytes.Repeat([]byte{0xEE}, codec.HeaderLen+2)
	if err := codec.PutHeader(out, 0x0201, 0x06050403, 0x07, 0x0B0A0908); err != nil {
		t.Fatalf("PutHeader: %v", err)
	}
	if !bytes.Equal(out[:codec.HeaderLen], wire) || out[11] != 0xEE || out[12] != 0xEE {
		t.Fatalf("PutHeader wrote % x, want % x then untouched bytes", out, wire)
	}
}

func TestHeaderErrors(t *testing.T) {
	for n := range codec.HeaderLen {
		if _, err := codec.ParseHeader(make([]byte, n)); !errors.Is(err, codec.ErrShortBuffer) {
			t.Errorf("ParseHeader(%d bytes) error = %v, want ErrShortBuffer", n, err)
		}
		if err := codec.PutHeader(make([]byte, n), 0, 0, 0, 0); !errors.Is(err, codec.ErrShortBuffer) {
			t.Errorf("PutHeader(%d bytes) error = %v, want ErrShortBuffer", n, err)
		}
	}
	b := make([]byte, codec.HeaderLen)
	for _, n := range []int{-1, 256} {
		if err := codec.PutHeader(b, 0, 0, n, 0); !errors.Is(err, codec.ErrRequestTooLong) {
			t.Errorf("PutHeader(request length %d) error = %v, want ErrRequestTooLong", n, err)
		}
	}
	if err := codec.PutHeader(b, 0, 0, 0, -1); !errors.Is(err, codec.ErrPayloadTooLarge) {
		t.Errorf("PutHeader(payload length -1) error = %v, want ErrPayloadTooLarge", err)
	}
	if err := codec.PutHeader(b, 0, 0, 0, 1<<32); err != nil {
		checkLimitError(t, err, 1<<32, 0xFFFFFFFF)
	} else {
		t.Errorf("PutHeader(payload length 4 GiB) succeeded")
	}
	if !bytes.Equal(b, make([]byte, codec.HeaderLen)) {
		t.Errorf("a refused PutHeader wrote % x", b)
	}
	if err := codec.PutHeader(b, 0, 0, 255, 0xFFFFFFFF); err != nil {
		t.Errorf("PutHeader(255, 4 GiB - 1): %v", err)
	}
}

// TestParseAliases checks that Parse copies nothing: the frame's slices
// point into the input, and their capacity is capped so that appending to
// one cannot overwrite the next field.
func TestParseAliases(t *testing.T) {
	f := codec.Frame{Seq: 7, Request: []byte("req"), Payload: []byte("payload")}
	for _, mac := range []bool{false, true} {
		m := macFor(mac)
		// Extra capacity and a following frame, so that an uncapped slice
		// would have room to grow into.
		buf := encode(t, f, m)
		flen := len(buf)
		buf = append(buf, encode(t, f, m)...)
		orig := bytes.Clone(buf)

		got, n, _, err := codec.Parse(buf, codec.Options{MAC: mac})
		if err != nil || n != flen {
			t.Fatalf("Parse = n %d, %v; want %d, nil", n, err, flen)
		}
		reqAt := codec.HeaderLen
		payAt := reqAt + len(f.Request)
		macAt := payAt + len(f.Payload)
		if &got.Request[0] != &buf[reqAt] {
			t.Errorf("Request does not alias buf[%d]", reqAt)
		}
		if &got.Payload[0] != &buf[payAt] {
			t.Errorf("Payload does not alias buf[%d]", payAt)
		}
		if cap(got.Request) != len(got.Request) || cap(got.Payload) != len(got.Payload) {
			t.Errorf("capacities %d, %d; want %d, %d", cap(got.Request), cap(got.Payload), len(got.Request), len(got.Payload))
		}
		if mac {
			if &got.MAC[0] != &buf[macAt] {
				t.Errorf("MAC does not alias buf[%d]", macAt)
			}
			if cap(got.MAC) != codec.MACLen {
				t.Errorf("cap(MAC) = %d, want %d", cap(got.MAC), codec.MACLen)
			}
			_ = append(got.MAC, 'X')
		}
		_ = append(got.Request, 'X')
		_ = append(got.Payload, 'X')
		if !bytes.Equal(buf, orig) {
			t.Errorf("appending to the parsed slices changed the input")
		}

		// Writing through a parsed slice shows in the input: no copy.
		got.Payload[0] = 'P'
		if buf[payAt] != 'P' {
			t.Errorf("a write to Payload did not reach buf")
		}
	}

	// Empty fields have zero capacity too.
	buf := append(encode(t, codec.Frame{Seq: 1}, nil), 'Z', 'Z')
	got, _, _, err := codec.Parse(buf, codec.Options{})
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	if len(got.Request) != 0 || cap(got.Request) != 0 || len(got.Payload) != 0 || cap(got.Payload) != 0 {
		t.Errorf("empty fields: request len %d cap %d, payload len %d cap %d", len(got.Request), cap(got.Request), len(got.Payload), cap(got.Payload))
	}
}

// TestRequestStatusPreserved checks that a request's status field comes
// through whatever it holds: the original client sends the previous
// answer's status in its next request.
func TestRequestStatusPreserved(t *testing.T) {
	for _, s := range []codec.Status{0, 1, codec.StatusOK, codec.StatusPayloadTooLarge, codec.StatusBadMAC, 1024, 1025, 0x8000, 0xFFFF} {
		f := codec.Frame{Status: s, Seq: 3, Request: []byte("echo"), Payload: []byte("hi")}
		buf := encode(t, f, nil)
		if got := codec.Status(binary.LittleEndian.Uint16(buf)); got != s {
			t.Errorf("encoded status %d, want %d", got, s)
		}
		parseWhole(t, buf, codec.Options{}, f, nil)
	}
}

func TestAppendFrame(t *testing.T) {
	f := codec.Frame{Status: 200, Seq: 5, Request: []byte("r"), Payload: []byte("abc")}

	// AppendFrame appends: an existing prefix is kept.
	dst := append(make([]byte, 0, 128), "prefix"...)
	got, err := codec.AppendFrame(dst, f, nil)
	if err != nil {
		t.Fatalf("AppendFrame: %v", err)
	}
	if string(got[:6]) != "prefix" || !bytes.Equal(got[6:], encode(t, f, nil)) {
		t.Fatalf("AppendFrame = % x", got)
	}
	if &got[0] != &dst[0] {
		t.Errorf("AppendFrame reallocated a buffer with room to spare")
	}

	// With a MAC, the frame's own MAC field is ignored and the payload
	// signed; without, no MAC is written whatever f.MAC holds.
	m := codec.NewMAC(testKey)
	f.MAC = bytes.Repeat([]byte{'!'}, codec.MACLen)
	signed := encode(t, f, m)
	if got, want := signed[len(signed)-codec.MACLen:], m.AppendSign(nil, f.Payload); !bytes.Equal(got, want) {
		t.Errorf("MAC on the wire = %q, want %q", got, want)
	}
	if plain := encode(t, f, nil); len(plain) != codec.Len(f, false) {
		t.Errorf("frame without MAC is %d bytes, want %d", len(plain), codec.Len(f, false))
	}
}

func TestBuffersFrame(t *testing.T) {
	tests := []struct {
		name  string
		frame codec.Frame
		parts int // slices returned without a MAC
	}{
		{"empty", codec.Frame{Seq: 1}, 1},
		{"request only", codec.Frame{Seq: 2, Request: []byte("ping")}, 2},
		{"payload only", codec.Frame{Seq: 3, Payload: []byte("data")}, 2},
		{"both", codec.Frame{Status: 500, Seq: 4, Request: []byte("echo"), Payload: fill(1000, 0)}, 3},
		{"max request", codec.Frame{Seq: 5, Request: fill(255, 'a'), Payload: []byte{0}}, 3},
		{"empty non-nil", codec.Frame{Seq: 6, Request: []byte{}, Payload: []byte{}}, 1},
	}
	var b codec.Buffers // reused across cases, as a connection would
	for _, tt := range tests {
		for _, mac := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/mac=%v", tt.name, mac), func(t *testing.T) {
				m := macFor(mac)
				vec, err := b.Frame(tt.frame, m)
				if err != nil {
					t.Fatalf("Buffers.Frame: %v", err)
				}
				want := tt.parts
				if mac {
					want++
				}
				if len(vec) != want {
					t.Fatalf("%d slices, want %d", len(vec), want)
				}
				for i, v := range vec {
					if len(v) == 0 {
						t.Errorf("slice %d is empty", i)
					}
				}
				if len(vec[0]) != codec.HeaderLen {
					t.Errorf("first slice is %d bytes, want the %d-byte header", len(vec[0]), codec.HeaderLen)
				}
				if mac && len(vec[len(vec)-1]) != codec.MACLen {
					t.Errorf("last slice is %d bytes, want the %d-byte MAC", len(vec[len(vec)-1]), codec.MACLen)
				}
				// Request and payload are not copied.
				i := 1
				if len(tt.frame.Request) > 0 {
					if &vec[i][0] != &tt.frame.Request[0] {
						t.Errorf("request slice does not alias the frame's request")
					}
					i++
				}
				if len(tt.frame.Payload) > 0 && &vec[i][0] != &tt.frame.Payload[0] {
					t.Errorf("payload slice does not alias the frame's payload")
				}
				if got, want := bytes.Join(vec, nil), encode(t, tt.frame, m); !bytes.Equal(got, want) {
					t.Fatalf("Buffers.Frame gives\n% x\nAppendFrame gives\n% x", got, want)
				}
			})
		}
	}
}

func TestLen(t *testing.T) {
	for _, f := range frameCases() {
		for _, mac := range []bool{false, true} {
			buf := encode(t, f, macFor(mac))
			if got := codec.Len(f, mac); got != len(buf) {
				t.Errorf("Len = %d, want %d", got, len(buf))
			}
			h, err := codec.ParseHeader(buf)
			if err != nil {
				t.Fatalf("ParseHeader: %v", err)
			}
			if got := h.FrameLen(mac); got != len(buf) {
				t.Errorf("FrameLen = %d, want %d", got, len(buf))
			}
		}
	}
}

func TestErrors(t *testing.T) {
	le := &codec.LimitError{Declared: 5000000, Limit: 4194304}
	if got, want := le.Error(), "petrel: payload length 5000000 > 4194304"; got != want {
		t.Errorf("LimitError.Error() = %q, want %q", got, want)
	}
	checkLimitError(t, fmt.Errorf("reading: %w", le), 5000000, 4194304)

	se := &codec.StatusError{Status: codec.StatusNoHandler, Request: "nope"}
	if got, want := se.Error(), "petrel: status 400: no handler for this request"; got != want {
		t.Errorf("StatusError.Error() = %q, want %q", got, want)
	}
	se.Reason = "no handler nope"
	if got, want := se.Error(), "petrel: status 400: no handler nope"; got != want {
		t.Errorf("StatusError.Error() = %q, want %q", got, want)
	}
	if got := (&codec.StatusError{Status: 1500}).Error(); got != "petrel: status 1500: status 1500" {
		t.Errorf("StatusError.Error() for an application status = %q", got)
	}

	tests := []struct {
		err  error
		want codec.Status
	}{
		{nil, codec.StatusOK},
		{le, codec.StatusPayloadTooLarge},
		{codec.ErrPayloadTooLarge, codec.StatusPayloadTooLarge},
		{fmt.Errorf("x: %w", le), codec.StatusPayloadTooLarge},
		{codec.ErrBadMAC, codec.StatusBadMAC},
		{fmt.Errorf("frame 3: %w", codec.ErrBadMAC), codec.StatusBadMAC},
		{se, codec.StatusNoHandler},
		{fmt.Errorf("call: %w", &codec.StatusError{Status: 1500}), 1500},
		{&codec.StatusError{Status: codec.StatusVersionMismatch}, codec.StatusVersionMismatch},
		{io.EOF, codec.StatusReadError},
		{io.ErrUnexpectedEOF, codec.StatusReadError},
		{codec.ErrShortBuffer, codec.StatusReadError},
		{codec.ErrRequestTooLong, codec.StatusReadError},
		{errors.New("anything"), codec.StatusReadError},
	}
	for _, tt := range tests {
		if got := codec.StatusOf(tt.err); got != tt.want {
			t.Errorf("StatusOf(%v) = %d, want %d", tt.err, got, tt.want)
		}
	}
}
