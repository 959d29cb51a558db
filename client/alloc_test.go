//go:build !race

package client_test

import (
	"context"
	"testing"

	"github.com/petrel-rpc/petrel/client"
)

// TestAllocs pins the steady-state allocations of a call, on both protocol
// versions, keyed and not: none for CallInto with a big enough buffer, one
// (the returned payload) for Call. The fake server allocates nothing per
// request either, and AllocsPerRun counts every goroutine's allocations.
func TestAllocs(t *testing.T) {
	for _, proto := range []client.Protocol{client.Protocol1, client.Protocol0} {
		for _, key := range [][]byte{nil, []byte("k")} {
			s := startFake(t, fakeConfig{Key: key})
			cfg := client.Config{Addr: s.Addr, HMACKey: key, Protocol: proto}
			c := mustDial(t, cfg)
			p, err := client.NewPool(client.PoolConfig{Config: cfg, Size: 1})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { p.Close() })
			for _, n := range []int{64, 16 << 10, 1 << 20} {
				payload := make([]byte, n)
				dst := make([]byte, 0, n)
				ctx := context.Background()
				check := func(what string, want float64, f func() error) {
					t.Helper()
					if err := f(); err != nil { // warm up: buffers grow, pool dials
						t.Fatal(err)
					}
					var err error
					got := testing.AllocsPerRun(100, func() {
						if e := f(); e != nil {
							err = e
						}
					})
					if err != nil {
						t.Fatal(err)
					}
					if got != want {
						t.Errorf("%s, version %v, key %q, %d bytes: %v allocs per call, want %v", what, proto, key, n, got, want)
					}
				}
				check("CallInto", 0, func() error { _, err := c.CallInto(ctx, "echo", payload, dst); return err })
				check("Call", 1, func() error { _, err := c.Call(ctx, "echo", payload); return err })
				check("Pool.CallInto", 0, func() error { _, err := p.CallInto(ctx, "echo", payload, dst); return err })
			}
		}
	}
}
