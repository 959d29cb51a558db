package client_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/petrel-rpc/petrel/client"
)

var benchSizes = []int{64, 16 << 10, 1 << 20}

// BenchmarkCall measures one client's round trips to the fake server over
// loopback TCP and a Unix socket, on protocol version 1 and 0, with and
// without a key. The fake server allocates nothing per request, so
// allocs/op is the client's.
func BenchmarkCall(b *testing.B) {
	for _, unix := range []bool{false, true} {
		tr := map[bool]string{false: "tcp", true: "unix"}[unix]
		for _, proto := range []client.Protocol{client.Protocol1, client.Protocol0} {
			for _, key := range [][]byte{nil, []byte("k")} {
				s := startFake(b, fakeConfig{Unix: unix, Key: key})
				c := mustDial(b, client.Config{Addr: s.Addr, HMACKey: key, Protocol: proto})
				name := fmt.Sprintf("%s/v%v/%s", tr, proto, keyName(key))
				for _, n := range benchSizes {
					payload := make([]byte, n)
					dst := make([]byte, 0, n)
					b.Run(fmt.Sprintf("%s/CallInto/%d", name, n), func(b *testing.B) {
						b.ReportAllocs()
						b.SetBytes(int64(2 * n))
						for b.Loop() {
							if _, err := c.CallInto(context.Background(), "echo", payload, dst); err != nil {
								b.Fatal(err)
							}
						}
					})
					b.Run(fmt.Sprintf("%s/Call/%d", name, n), func(b *testing.B) {
						b.ReportAllocs()
						b.SetBytes(int64(2 * n))
						for b.Loop() {
							if _, err := c.Call(context.Background(), "echo", payload); err != nil {
								b.Fatal(err)
							}
						}
					})
				}
			}
		}
	}
}

// BenchmarkCallCancellableCtx shows the cost of a context that can be
// cancelled: context.AfterFunc's allocations per call.
func BenchmarkCallCancellableCtx(b *testing.B) {
	s := startFake(b, fakeConfig{})
	c := mustDial(b, client.Config{Addr: s.Addr})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	payload := make([]byte, 64)
	dst := make([]byte, 0, 64)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := c.CallInto(ctx, "echo", payload, dst); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkPool measures a pool of 8 connections shared by parallel
// goroutines.
func BenchmarkPool(b *testing.B) {
	s := startFake(b, fakeConfig{})
	p, err := client.NewPool(client.PoolConfig{Config: client.Config{Addr: s.Addr}, Size: 8})
	if err != nil {
		b.Fatal(err)
	}
	defer p.Close()
	for _, n := range benchSizes {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(2 * n))
			b.RunParallel(func(pb *testing.PB) {
				payload := make([]byte, n)
				dst := make([]byte, 0, n)
				for pb.Next() {
					if _, err := p.CallInto(context.Background(), "echo", payload, dst); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}
