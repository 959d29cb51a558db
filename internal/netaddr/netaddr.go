// Package netaddr parses the address forms Petrel servers listen on and
// clients dial: "host:port", "tcp://host:port" and "unix:///path".
package netaddr

import (
	"errors"
	"fmt"
	"net"
	"strings"
)

// ErrAddress is wrapped by every error Split returns.
var ErrAddress = errors.New("invalid address")

// Split turns addr into a network ("tcp" or "unix") and an address for
// net.Listen or net.Dial.
func Split(addr string) (network, address string, err error) {
	switch {
	case addr == "":
		return "", "", fmt.Errorf("%w: empty address", ErrAddress)
	case strings.HasPrefix(addr, "unix://"):
		p := strings.TrimPrefix(addr, "unix://")
		if p == "" {
			return "", "", fmt.Errorf("%w: empty unix socket path in %q", ErrAddress, addr)
		}
		return "unix", p, nil
	case strings.HasPrefix(addr, "tcp://"):
		addr = strings.TrimPrefix(addr, "tcp://")
	case strings.Contains(addr, "://"):
		return "", "", fmt.Errorf("%w: unknown scheme in %q (want tcp:// or unix://)", ErrAddress, addr)
	}
	if _, _, err := net.SplitHostPort(addr); err != nil {
		return "", "", fmt.Errorf("%w: %q: %w", ErrAddress, addr, err)
	}
	return "tcp", addr, nil
}
