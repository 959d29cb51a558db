package frameio

import (
	"bytes"
	"errors"
	"io"
	"testing"
	"testing/iotest"

	"github.com/petrel-rpc/petrel/codec"
)

func TestReader(t *testing.T) {
	var stream []byte
	for i := range 50 {
		stream, _ = codec.AppendFrame(stream, codec.Frame{Seq: uint32(i), Request: []byte("echo"), Payload: bytes.Repeat([]byte{byte(i)}, i*300)}, nil)
	}
	for name, src := range map[string]io.Reader{
		"whole":    bytes.NewReader(stream),
		"one byte": iotest.OneByteReader(bytes.NewReader(stream)),
	} {
		var r Reader
		for i := range 50 {
			f, err := r.Next(src, codec.Options{})
			if err != nil || f.Seq != uint32(i) || len(f.Payload) != i*300 {
				t.Fatalf("%s: frame %d: seq %d, %d bytes, %v", name, i, f.Seq, len(f.Payload), err)
			}
		}
		if _, err := r.Next(src, codec.Options{}); err != io.EOF || r.Buffered() != 0 {
			t.Fatalf("%s: end: %v, %d buffered", name, err, r.Buffered())
		}
	}
	// A stream cut inside the second frame (the first is 15 bytes).
	var r Reader
	cut := bytes.NewReader(stream[:20])
	if _, err := r.Next(cut, codec.Options{}); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Next(cut, codec.Options{}); err != io.EOF || r.Buffered() != 5 || r.Missing() != 6 {
		t.Fatalf("cut: %v, %d buffered, %d missing", err, r.Buffered(), r.Missing())
	}
	// A header over the limit: the second frame declares 300 bytes.
	r = Reader{}
	src := bytes.NewReader(stream)
	if _, err := r.Next(src, codec.Options{MaxPayload: 1}); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Next(src, codec.Options{MaxPayload: 1}); !errors.Is(err, codec.ErrPayloadTooLarge) {
		t.Fatalf("limit: %v", err)
	}
}
