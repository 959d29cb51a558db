//go:build unix

package engine_test

import (
	"syscall"
	"testing"

	"github.com/petrel-rpc/petrel/codec"
	"github.com/petrel-rpc/petrel/engine"
)

// 501: an answer that cannot be framed (a payload over 4 GiB) is answered
// 501 instead, and the connection closed. The payload is a PROT_NONE
// mapping: address space only, never touched.
func TestInternalError(t *testing.T) {
	huge, err := syscall.Mmap(-1, 0, 1<<32+1, syscall.PROT_NONE, syscall.MAP_PRIVATE|syscall.MAP_ANON|syscall.MAP_NORESERVE)
	if err != nil {
		t.Skipf("cannot reserve 4 GiB of address space: %v", err)
	}
	t.Cleanup(func() { syscall.Munmap(huge) })
	forEach(t, func(t *testing.T, e env) {
		srv := e.listen(t, engine.Config{Handlers: map[string]engine.Handler{
			"huge": engine.Classic(func([]byte) (uint16, []byte, error) { return 200, huge, nil }),
		}})
		c := dial(t, srv)
		c.expect("huge", nil, codec.StatusInternalError, nil)
		c.expectClosed()
		if st := srv.Stats(); st.ByStatus["501"] != 1 {
			t.Errorf("ByStatus = %v", st.ByStatus)
		}
	})
}
