//go:build linux || darwin || freebsd || netbsd || openbsd || dragonfly

package engine

import (
	"testing"
	"unsafe"
)

// An idle reactor connection holds an rconn and gnet's own state: keep the
// rconn within its size class (docs/design.md, "Memory per connection").
func TestRconnSize(t *testing.T) {
	const limit = 160 // a Go size class: one byte more costs 16
	if n := unsafe.Sizeof(rconn{}); n > limit {
		t.Errorf("rconn is %d bytes, over %d", n, limit)
	}
	if n := unsafe.Sizeof(holding{}); n != 8 {
		t.Errorf("holding is %d bytes, want one word", n)
	}
}
