package codec_test

import (
	"bytes"
	"errors"
	"fmt"
	"testing"

	"github.com/petrel-rpc/petrel/codec"
)

// v1 are the parse options of a version-1 session, keyed or not.
func v1(mac bool) codec.Options { return codec.Options{MAC: mac, Version: codec.ProtocolV1} }

// encodeV1 returns the version-1 encoding of f, tagged in direction dir
// with m when m is non-nil, and fails the test if AppendFrameV1 refuses it.
func encodeV1(tb testing.TB, f codec.Frame, m *codec.FrameMAC, dir codec.Direction) []byte {
	tb.Helper()
	b, err := codec.AppendFrameV1(nil, f, m, dir)
	if err != nil {
		tb.Fatalf("AppendFrameV1(req %d bytes, payload %d bytes): %v", len(f.Request), len(f.Payload), err)
	}
	return b
}

// lenV1 is the length of f's version-1 encoding.
func lenV1(f codec.Frame, mac bool) int {
	return v1(mac).FrameLen(codec.Header{RequestLen: uint8(len(f.Request)), PayloadLen: uint32(len(f.Payload))})
}

func TestOptionsMACLen(t *testing.T) {
	tests := []struct {
		o    codec.Options
		want int
	}{
		{codec.Options{}, 0},
		{codec.Options{Version: codec.ProtocolV1}, 0},
		{codec.Options{Version: 7}, 0},
		{codec.Options{MAC: true}, codec.MACLen},
		{codec.Options{MAC: true, Version: codec.ProtocolV0}, 44},
		{codec.Options{MAC: true, Version: codec.ProtocolV1}, codec.TagLen},
		{codec.Options{MAC: true, Version: codec.ProtocolV1, MaxPayload: 1}, 32},
		{codec.Options{MAC: true, Version: 2}, 32},
		{codec.Options{MAC: true, Version: 255}, 32},
	}
	for _, tt := range tests {
		if got := tt.o.MACLen(); got != tt.want {
			t.Errorf("%+v.MACLen() = %d, want %d", tt.o, got, tt.want)
		}
	}
	if codec.TagLen != 32 || codec.NonceLen != 16 || codec.ProtocolV0 != 0 || codec.ProtocolV1 != 1 || codec.ProtocolVersion != 0 {
		t.Errorf("constants changed: TagLen %d, NonceLen %d, ProtocolV0 %d, ProtocolV1 %d, ProtocolVersion %d",
			codec.TagLen, codec.NonceLen, codec.ProtocolV0, codec.ProtocolV1, codec.ProtocolVersion)
	}
}

func TestOptionsFrameLen(t *testing.T) {
	headers := []codec.Header{
		{},
		{RequestLen: 10, PayloadLen: 1},
		{Status: 0xFFFF, Seq: 0xFFFFFFFF, RequestLen: 255, PayloadLen: 0xFFFFFFFF},
	}
	for _, h := range headers {
		body := 11 + int(h.RequestLen) + int(h.PayloadLen)
		for _, tt := range []struct {
			o    codec.Options
			want int
		}{
			{codec.Options{}, body},
			{v1(false), body},
			{codec.Options{MAC: true}, body + 44},
			{v1(true), body + 32},
		} {
			if got := tt.o.FrameLen(h); got != tt.want {
				t.Errorf("%+v.FrameLen(%+v) = %d, want %d", tt.o, h, got, tt.want)
			}
		}
		// Version 0 agrees with the header's own FrameLen.
		for _, mac := range []bool{false, true} {
			if got, want := (codec.Options{MAC: mac}).FrameLen(h), h.FrameLen(mac); got != want {
				t.Errorf("Options{MAC: %v}.FrameLen = %d, Header.FrameLen = %d", mac, got, want)
			}
		}
	}
	// And with the encoders.
	for _, f := range frameCases() {
		for _, mac := range []bool{false, true} {
			if got, want := lenV1(f, mac), len(encodeV1(t, f, testFrameMAC(mac), codec.ClientToServer)); got != want {
				t.Errorf("FrameLen = %d, AppendFrameV1 wrote %d", got, want)
			}
		}
	}
}

// parseWholeV1 parses buf, which must hold exactly one whole version-1
// frame, checks it against want and, when m is non-nil, verifies its tag in
// direction dir.
func parseWholeV1(tb testing.TB, buf []byte, o codec.Options, want codec.Frame, m *codec.FrameMAC, dir codec.Direction) codec.Frame {
	tb.Helper()
	f, n, need, err := codec.Parse(buf, o)
	if err != nil || n != len(buf) || need != 0 {
		tb.Fatalf("Parse(%d bytes) = n %d, need %d, err %v; want n %d, need 0, nil", len(buf), n, need, err, len(buf))
	}
	checkFields(tb, f, want)
	if o.MAC {
		if len(f.MAC) != codec.TagLen || cap(f.MAC) != codec.TagLen {
			tb.Fatalf("tag is %d bytes (cap %d), want %d", len(f.MAC), cap(f.MAC), codec.TagLen)
		}
		if &f.MAC[0] != &buf[n-codec.TagLen] {
			tb.Fatalf("tag does not alias the last %d bytes", codec.TagLen)
		}
		if m != nil {
			if err := m.Verify(dir, f); err != nil {
				tb.Fatalf("Verify of a parsed frame: %v", err)
			}
		}
	} else if f.MAC != nil {
		tb.Fatalf("MAC = %x with MACs off, want nil", f.MAC)
	}
	return f
}

// TestParseV1EveryCut cuts each version-1 frame at every length short of
// whole (inside the header, at its end, inside the request, payload and
// tag): Parse asks for exactly the missing bytes and returns no frame.
func TestParseV1EveryCut(t *testing.T) {
	for i, f := range frameCases() {
		for _, mac := range []bool{false, true} {
			t.Run(fmt.Sprintf("frame=%d/mac=%v", i, mac), func(t *testing.T) {
				m := testFrameMAC(mac)
				o := v1(mac)
				buf := encodeV1(t, f, m, codec.ClientToServer)
				if len(buf) != lenV1(f, mac) {
					t.Fatalf("encoded %d bytes, FrameLen says %d", len(buf), lenV1(f, mac))
				}
				for cut := range len(buf) {
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
				parseWholeV1(t, buf, o, f, m, codec.ClientToServer)
			})
		}
	}
}

// TestParseV1Boundaries names the boundaries of one tagged frame.
func TestParseV1Boundaries(t *testing.T) {
	f := codec.Frame{Status: 200, Seq: 9, Request: []byte("abc"), Payload: []byte("12345")}
	buf := encodeV1(t, f, testFrameMAC(true), codec.ServerToClient)
	total := 11 + 3 + 5 + 32
	if len(buf) != total {
		t.Fatalf("frame is %d bytes, want %d", len(buf), total)
	}
	tests := []struct {
		name string
		have int
		need int
	}{
		{"nothing", 0, 11},
		{"one byte", 1, 10},
		{"header less one", 10, 1},
		{"header", 11, total - 11},
		{"request", 14, 37},
		{"payload", 19, 32},
		{"tag less one", total - 1, 1},
	}
	for _, tt := range tests {
		_, n, need, err := codec.Parse(buf[:tt.have], v1(true))
		if n != 0 || need != tt.need || err != nil {
			t.Errorf("%s: Parse(%d bytes) = n %d, need %d, %v; want 0, %d, nil", tt.name, tt.have, n, need, err, tt.need)
		}
	}
	// A version-0 reader of the same bytes wants 12 more: it expects a
	// 44-byte MAC.
	if _, n, need, err := codec.Parse(buf, codec.Options{MAC: true}); n != 0 || need != 12 || err != nil {
		t.Errorf("Parse as version 0 = n %d, need %d, %v; want 0, 12, nil", n, need, err)
	}
	// A version-1 reader of a version-0 frame stops 12 bytes early and its
	// "tag" does not verify.
	v0 := encode(t, f, codec.NewMAC(testKey))
	got, n, _, err := codec.Parse(v0, v1(true))
	if err != nil || n != len(v0)-12 {
		t.Fatalf("Parse of a version-0 frame as version 1 = n %d, %v; want %d", n, err, len(v0)-12)
	}
	if err := testFrameMAC(true).Verify(codec.ServerToClient, got); !errors.Is(err, codec.ErrBadMAC) {
		t.Errorf("Verify of a version-0 MAC's first 32 bytes = %v, want ErrBadMAC", err)
	}
}

func TestParseV1Stream(t *testing.T) {
	for _, mac := range []bool{false, true} {
		for _, chunk := range []int{1, 7, 11, 32, 1 << 20} {
			t.Run(fmt.Sprintf("mac=%v/chunk=%d", mac, chunk), func(t *testing.T) {
				m := testFrameMAC(mac)
				o := v1(mac)
				frames := frameCases()
				var stream []byte
				for _, f := range frames {
					stream = append(stream, encodeV1(t, f, m, codec.ClientToServer)...)
				}
				var inbound []byte
				got := 0
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
							if err := m.Verify(codec.ClientToServer, f); err != nil {
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

func TestPayloadLimitV1(t *testing.T) {
	for _, mac := range []bool{false, true} {
		o := v1(mac)
		o.MaxPayload = 16
		m := testFrameMAC(mac)
		f := codec.Frame{Seq: 1, Request: []byte("r"), Payload: fill(16, 1)}
		parseWholeV1(t, encodeV1(t, f, m, codec.ClientToServer), o, f, m, codec.ClientToServer)

		f.Payload = fill(17, 1)
		buf := encodeV1(t, f, m, codec.ClientToServer)
		for _, cut := range []int{codec.HeaderLen, len(buf) - 1, len(buf)} {
			_, n, need, err := codec.Parse(buf[:cut], o)
			if n != 0 || need != 0 {
				t.Fatalf("mac %v: Parse(%d bytes over the limit) = n %d, need %d", mac, cut, n, need)
			}
			checkLimitError(t, err, 17, 16)
		}

		// The largest declared frame asks for the rest, tag included,
		// without allocating it.
		o.MaxPayload = 0xFFFFFFFF
		want := 3 + 0xFFFFFFFF + o.MACLen()
		if _, n, need, err := codec.Parse(header(0, 1, 3, 0xFFFFFFFF), o); n != 0 || need != want || err != nil {
			t.Errorf("mac %v: n %d, need %d, %v; want 0, %d, nil", mac, n, need, err, want)
		}
	}
}

// TestWireVectorV1 pins a whole tagged answer byte for byte: the frame as
// version 0 lays it out, then the raw tag (known answer, computed outside
// Go).
func TestWireVectorV1(t *testing.T) {
	f := codec.Frame{Status: codec.StatusOK, Seq: 7, Request: []byte("echo"), Payload: []byte("hello")}
	wire := append([]byte{
		0xC8, 0x00, // 200
		0x07, 0x00, 0x00, 0x00, // seq 7
		0x04,                   // request length
		0x05, 0x00, 0x00, 0x00, // payload length
	}, "echohello"...)
	wire = append(wire, mustHex(t, "d8f1563132715e35a5af48c12a096a808e8febc94a11ba5895700ced026bebc6")...)
	m := testFrameMAC(true)
	if got := encodeV1(t, f, m, codec.ServerToClient); !bytes.Equal(got, wire) {
		t.Fatalf("AppendFrameV1:\n got % x\nwant % x", got, wire)
	}
	var b codec.Buffers
	vec, err := b.FrameV1(f, m, codec.ServerToClient)
	if err != nil || !bytes.Equal(bytes.Join(vec, nil), wire) {
		t.Fatalf("Buffers.FrameV1 = % x, %v", bytes.Join(vec, nil), err)
	}
	parseWholeV1(t, wire, v1(true), f, m, codec.ServerToClient)
}

func TestAppendFrameV1(t *testing.T) {
	m := testFrameMAC(true)
	f := codec.Frame{Status: 200, Seq: 5, Request: []byte("r"), Payload: []byte("abc")}

	// The body is the version-0 encoding, then the tag.
	got := encodeV1(t, f, m, codec.ServerToClient)
	body := encode(t, f, nil)
	if !bytes.Equal(got[:len(body)], body) || !bytes.Equal(got[len(body):], m.AppendSign(nil, codec.ServerToClient, f)) {
		t.Fatalf("AppendFrameV1 = % x", got)
	}

	// Without a FrameMAC no tag is written: the unkeyed frame is a
	// version-0 one.
	if plain := encodeV1(t, f, nil, codec.ServerToClient); !bytes.Equal(plain, body) {
		t.Errorf("unkeyed AppendFrameV1 = % x, want % x", plain, body)
	}

	// It appends, growing dst only when needed; f.MAC is ignored.
	f.MAC = bytes.Repeat([]byte{'!'}, codec.TagLen)
	dst := append(make([]byte, 0, 128), "prefix"...)
	out, err := codec.AppendFrameV1(dst, f, m, codec.ServerToClient)
	if err != nil || string(out[:6]) != "prefix" || !bytes.Equal(out[6:], got) {
		t.Fatalf("AppendFrameV1 after a prefix = % x, %v", out, err)
	}
	if &out[0] != &dst[0] {
		t.Errorf("AppendFrameV1 reallocated a buffer with room to spare")
	}

	// Request text over 255 bytes is refused, dst unchanged.
	for _, mm := range []*codec.FrameMAC{nil, m} {
		out, err := codec.AppendFrameV1(dst, codec.Frame{Request: fill(256, 'a')}, mm, codec.ClientToServer)
		if !errors.Is(err, codec.ErrRequestTooLong) || string(out) != "prefix" {
			t.Errorf("AppendFrameV1(256-byte request) = %q, %v; want dst unchanged, ErrRequestTooLong", out, err)
		}
	}
}

func TestBuffersFrameV1(t *testing.T) {
	tests := []struct {
		name  string
		frame codec.Frame
		parts int // slices returned without a tag
	}{
		{"empty", codec.Frame{Seq: 1}, 1},
		{"request only", codec.Frame{Seq: 2, Request: []byte("ping")}, 2},
		{"payload only", codec.Frame{Seq: 3, Payload: []byte("data")}, 2},
		{"both", codec.Frame{Status: 500, Seq: 4, Request: []byte("echo"), Payload: fill(1000, 0)}, 3},
		{"max request", codec.Frame{Seq: 5, Request: fill(255, 'a'), Payload: []byte{0}}, 3},
	}
	var b codec.Buffers // reused across cases and versions, as a connection would
	for _, tt := range tests {
		for _, mac := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/mac=%v", tt.name, mac), func(t *testing.T) {
				m := testFrameMAC(mac)
				// A version-0 frame first, so a 44-byte MAC is left in b.
				if _, err := b.Frame(tt.frame, codec.NewMAC(testKey)); err != nil {
					t.Fatal(err)
				}
				vec, err := b.FrameV1(tt.frame, m, codec.ClientToServer)
				if err != nil {
					t.Fatalf("Buffers.FrameV1: %v", err)
				}
				want := tt.parts
				if mac {
					want++
				}
				if len(vec) != want {
					t.Fatalf("%d slices, want %d", len(vec), want)
				}
				if len(vec[0]) != codec.HeaderLen {
					t.Errorf("first slice is %d bytes, want the header", len(vec[0]))
				}
				if mac && len(vec[len(vec)-1]) != codec.TagLen {
					t.Errorf("last slice is %d bytes, want the %d-byte tag", len(vec[len(vec)-1]), codec.TagLen)
				}
				if len(tt.frame.Payload) > 0 && &vec[tt.parts-1][0] != &tt.frame.Payload[0] {
					t.Errorf("payload slice does not alias the frame's payload")
				}
				if got, want := bytes.Join(vec, nil), encodeV1(t, tt.frame, m, codec.ClientToServer); !bytes.Equal(got, want) {
					t.Fatalf("Buffers.FrameV1 gives\n% x\nAppendFrameV1 gives\n% x", got, want)
				}
			})
		}
	}
	vec, err := b.FrameV1(codec.Frame{Request: fill(256, 'a')}, testFrameMAC(true), codec.ClientToServer)
	if !errors.Is(err, codec.ErrRequestTooLong) || vec != nil {
		t.Errorf("Buffers.FrameV1(256-byte request) = %d slices, %v; want nil, ErrRequestTooLong", len(vec), err)
	}
}
