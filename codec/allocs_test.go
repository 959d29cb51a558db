//go:build !race

package codec_test

import (
	"testing"

	"github.com/petrel-rpc/petrel/codec"
)

// checkNoAllocs fails the test if fn allocates. The race detector's
// instrumentation allocates, hence the build tag.
func checkNoAllocs(t *testing.T, name string, fn func()) {
	t.Helper()
	if n := testing.AllocsPerRun(100, fn); n != 0 {
		t.Errorf("%s: %v allocations per run, want 0", name, n)
	}
}

func TestNoAllocs(t *testing.T) {
	for _, size := range []int{0, 100, 64 << 10} {
		f := benchFrame(size)
		m := codec.NewMAC(testKey)
		signed := encode(t, f, m)
		plainBuf := make([]byte, 0, codec.Len(f, false))
		signedBuf := make([]byte, 0, codec.Len(f, true))
		sig := m.AppendSign(nil, f.Payload)
		sigBuf := make([]byte, 0, codec.MACLen)
		var bufs codec.Buffers

		checkNoAllocs(t, "Parse", func() {
			if _, n, _, err := codec.Parse(signed, codec.Options{MAC: true}); n != len(signed) || err != nil {
				t.Fatalf("Parse = %d, %v", n, err)
			}
		})
		checkNoAllocs(t, "Parse partial", func() {
			if _, _, need, _ := codec.Parse(signed[:len(signed)-1], codec.Options{MAC: true}); need != 1 {
				t.Fatalf("need = %d", need)
			}
		})
		checkNoAllocs(t, "AppendFrame", func() {
			if _, err := codec.AppendFrame(plainBuf[:0], f, nil); err != nil {
				t.Fatal(err)
			}
		})
		checkNoAllocs(t, "AppendFrame with MAC", func() {
			if _, err := codec.AppendFrame(signedBuf[:0], f, m); err != nil {
				t.Fatal(err)
			}
		})
		checkNoAllocs(t, "Buffers.Frame", func() {
			if _, err := bufs.Frame(f, nil); err != nil {
				t.Fatal(err)
			}
		})
		checkNoAllocs(t, "Buffers.Frame with MAC", func() {
			if _, err := bufs.Frame(f, m); err != nil {
				t.Fatal(err)
			}
		})
		checkNoAllocs(t, "MAC.AppendSign", func() {
			sigBuf = m.AppendSign(sigBuf[:0], f.Payload)
		})
		checkNoAllocs(t, "MAC.Verify", func() {
			if err := m.Verify(f.Payload, sig); err != nil {
				t.Fatal(err)
			}
		})
		checkNoAllocs(t, "MAC.Verify failing", func() {
			if err := m.Verify(f.Payload, sig[:10]); err == nil {
				t.Fatal("short MAC verified")
			}
		})
	}
}

func TestNoAllocsV1(t *testing.T) {
	o := codec.Options{MAC: true, Version: codec.ProtocolV1}
	for _, size := range []int{0, 64, 16 << 10, 1 << 20} {
		f := benchFrame(size)
		m := codec.NewFrameMAC(testSessionKey())
		signed, err := codec.AppendFrameV1(nil, f, m, codec.ClientToServer)
		if err != nil {
			t.Fatal(err)
		}
		parsed, _, _, _ := codec.Parse(signed, o)
		tampered := parsed
		tampered.Seq++
		frameBuf := make([]byte, 0, len(signed))
		tagBuf := make([]byte, 0, codec.TagLen)
		var bufs codec.Buffers
		pc := codec.AppendProtoCheck(nil, codec.ProtocolV1, testClientNonce)
		pcBuf := make([]byte, 0, len(pc))

		checkNoAllocs(t, "Parse v1", func() {
			if _, n, _, err := codec.Parse(signed, o); n != len(signed) || err != nil {
				t.Fatalf("Parse = %d, %v", n, err)
			}
		})
		checkNoAllocs(t, "Parse v1 partial", func() {
			if _, _, need, _ := codec.Parse(signed[:len(signed)-1], o); need != 1 {
				t.Fatalf("need = %d", need)
			}
		})
		checkNoAllocs(t, "AppendFrameV1", func() {
			if _, err := codec.AppendFrameV1(frameBuf[:0], f, m, codec.ClientToServer); err != nil {
				t.Fatal(err)
			}
		})
		checkNoAllocs(t, "AppendFrameV1 unkeyed", func() {
			if _, err := codec.AppendFrameV1(frameBuf[:0], f, nil, codec.ClientToServer); err != nil {
				t.Fatal(err)
			}
		})
		checkNoAllocs(t, "Buffers.FrameV1", func() {
			if _, err := bufs.FrameV1(f, m, codec.ServerToClient); err != nil {
				t.Fatal(err)
			}
		})
		checkNoAllocs(t, "Buffers.FrameV1 unkeyed", func() {
			if _, err := bufs.FrameV1(f, nil, codec.ServerToClient); err != nil {
				t.Fatal(err)
			}
		})
		checkNoAllocs(t, "FrameMAC.AppendSign", func() {
			tagBuf = m.AppendSign(tagBuf[:0], codec.ServerToClient, f)
		})
		checkNoAllocs(t, "FrameMAC.Verify", func() {
			if err := m.Verify(codec.ClientToServer, parsed); err != nil {
				t.Fatal(err)
			}
		})
		checkNoAllocs(t, "FrameMAC.Verify failing", func() {
			if err := m.Verify(codec.ClientToServer, tampered); err == nil {
				t.Fatal("tampered frame verified")
			}
		})
		checkNoAllocs(t, "AppendProtoCheck", func() {
			pcBuf = codec.AppendProtoCheck(pcBuf[:0], codec.ProtocolV1, testClientNonce)
		})
		checkNoAllocs(t, "ParseProtoCheck", func() {
			if _, _, err := codec.ParseProtoCheck(pc); err != nil {
				t.Fatal(err)
			}
		})
	}
}
