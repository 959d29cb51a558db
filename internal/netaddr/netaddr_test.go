package netaddr

import (
	"errors"
	"testing"
)

func TestSplit(t *testing.T) {
	for _, tc := range []struct{ in, network, address string }{
		{"127.0.0.1:7777", "tcp", "127.0.0.1:7777"},
		{"tcp://localhost:0", "tcp", "localhost:0"},
		{"[::1]:80", "tcp", "[::1]:80"},
		{"unix:///run/x.sock", "unix", "/run/x.sock"},
		{"unix://rel.sock", "unix", "rel.sock"},
	} {
		n, a, err := Split(tc.in)
		if err != nil || n != tc.network || a != tc.address {
			t.Errorf("Split(%q) = %q, %q, %v; want %q, %q", tc.in, n, a, err, tc.network, tc.address)
		}
	}
	for _, bad := range []string{"", "unix://", "http://x:1", "nohost", "tcp://x"} {
		if _, _, err := Split(bad); !errors.Is(err, ErrAddress) {
			t.Errorf("Split(%q) err = %v, want ErrAddress", bad, err)
		}
	}
}
