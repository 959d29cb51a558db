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
