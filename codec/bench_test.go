package codec_test

import (
	"strconv"
	"testing"

	"github.com/petrel-rpc/petrel/codec"
)

// benchSizes is the ladder of payload sizes every benchmark runs at.
var benchSizes = []int{0, 64, 1 << 10, 16 << 10, 1 << 20}

// benchFrame is a typical request with a payload of size bytes.
func benchFrame(size int) codec.Frame {
	return codec.Frame{Seq: 42, Request: []byte("bench.echo"), Payload: fill(size, 1)}
}

// forSizes runs fn as a sub-benchmark per payload size, reporting
// allocations, and throughput in payload bytes when the operation reads
// the payload (perByte); a zero-copy operation's MB/s would mean nothing.
func forSizes(b *testing.B, perByte bool, fn func(b *testing.B, f codec.Frame)) {
	for _, size := range benchSizes {
		b.Run("payload="+strconv.Itoa(size), func(b *testing.B) {
			f := benchFrame(size)
			b.ReportAllocs()
			if perByte {
				b.SetBytes(int64(size))
			}
			fn(b, f)
		})
	}
}

func BenchmarkParse(b *testing.B) {
	forSizes(b, false, func(b *testing.B, f codec.Frame) {
		buf := encode(b, f, nil)
		o := codec.Options{MaxPayload: 2 << 20}
		for b.Loop() {
			if _, n, _, err := codec.Parse(buf, o); n != len(buf) || err != nil {
				b.Fatalf("Parse = %d, %v", n, err)
			}
		}
	})
}

func BenchmarkAppendFrame(b *testing.B) {
	forSizes(b, true, func(b *testing.B, f codec.Frame) {
		buf := make([]byte, 0, codec.Len(f, false))
		var err error
		for b.Loop() {
			if buf, err = codec.AppendFrame(buf[:0], f, nil); err != nil {
				b.Fatal(err)
			}
		}
	})
}

func BenchmarkBuffersFrame(b *testing.B) {
	forSizes(b, false, func(b *testing.B, f codec.Frame) {
		var bufs codec.Buffers
		for b.Loop() {
			if _, err := bufs.Frame(f, nil); err != nil {
				b.Fatal(err)
			}
		}
	})
}

func BenchmarkMACAppendSign(b *testing.B) {
	forSizes(b, true, func(b *testing.B, f codec.Frame) {
		m := codec.NewMAC(testKey)
		buf := make([]byte, 0, codec.MACLen)
		for b.Loop() {
			buf = m.AppendSign(buf[:0], f.Payload)
		}
	})
}

func BenchmarkMACVerify(b *testing.B) {
	forSizes(b, true, func(b *testing.B, f codec.Frame) {
		m := codec.NewMAC(testKey)
		sig := m.AppendSign(nil, f.Payload)
		for b.Loop() {
			if err := m.Verify(f.Payload, sig); err != nil {
				b.Fatal(err)
			}
		}
	})
}

func BenchmarkParseV1(b *testing.B) {
	forSizes(b, false, func(b *testing.B, f codec.Frame) {
		m := codec.NewFrameMAC(testSessionKey())
		buf, err := codec.AppendFrameV1(nil, f, m, codec.ClientToServer)
		if err != nil {
			b.Fatal(err)
		}
		o := codec.Options{MaxPayload: 2 << 20, MAC: true, Version: codec.ProtocolV1}
		for b.Loop() {
			if _, n, _, err := codec.Parse(buf, o); n != len(buf) || err != nil {
				b.Fatalf("Parse = %d, %v", n, err)
			}
		}
	})
}

func BenchmarkAppendFrameV1(b *testing.B) {
	forSizes(b, true, func(b *testing.B, f codec.Frame) {
		m := codec.NewFrameMAC(testSessionKey())
		buf := make([]byte, 0, codec.Len(f, false)+codec.TagLen)
		var err error
		for b.Loop() {
			if buf, err = codec.AppendFrameV1(buf[:0], f, m, codec.ClientToServer); err != nil {
				b.Fatal(err)
			}
		}
	})
}

func BenchmarkBuffersFrameV1(b *testing.B) {
	forSizes(b, true, func(b *testing.B, f codec.Frame) {
		m := codec.NewFrameMAC(testSessionKey())
		var bufs codec.Buffers
		for b.Loop() {
			if _, err := bufs.FrameV1(f, m, codec.ServerToClient); err != nil {
				b.Fatal(err)
			}
		}
	})
}

func BenchmarkFrameMACAppendSign(b *testing.B) {
	forSizes(b, true, func(b *testing.B, f codec.Frame) {
		m := codec.NewFrameMAC(testSessionKey())
		buf := make([]byte, 0, codec.TagLen)
		for b.Loop() {
			buf = m.AppendSign(buf[:0], codec.ClientToServer, f)
		}
	})
}

func BenchmarkFrameMACVerify(b *testing.B) {
	forSizes(b, true, func(b *testing.B, f codec.Frame) {
		m := codec.NewFrameMAC(testSessionKey())
		f.MAC = m.AppendSign(nil, codec.ServerToClient, f)
		for b.Loop() {
			if err := m.Verify(codec.ServerToClient, f); err != nil {
				b.Fatal(err)
			}
		}
	})
}
