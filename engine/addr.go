package engine

import (
	"errors"
	"fmt"
	"net"
	"os"
	"syscall"
	"time"

	"github.com/petrel-rpc/petrel/internal/netaddr"
)

// parseAddr splits a configured address into network and address:
// "host:port" and "tcp://host:port" give tcp, "unix:///path" gives unix.
func parseAddr(addr string) (network, address string, err error) {
	network, address, err = netaddr.Split(addr)
	if err != nil {
		return "", "", fmt.Errorf("%w: %w", ErrConfig, err)
	}
	return network, address, nil
}

// prepareUnixSocket removes a stale socket file at path, but only when
// nothing listens on it; a live socket or a non-socket file is an error.
func prepareUnixSocket(path string) error {
	fi, err := os.Lstat(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("petrel: unix socket %s: %w", path, err)
	}
	if fi.Mode()&os.ModeSocket == 0 {
		return fmt.Errorf("petrel: unix socket %s: %w: exists and is not a socket", path, syscall.EADDRINUSE)
	}
	c, err := net.DialTimeout("unix", path, time.Second)
	if err == nil {
		c.Close()
		return fmt.Errorf("petrel: unix socket %s: %w: a server is listening on it", path, syscall.EADDRINUSE)
	}
	if rmErr := os.Remove(path); rmErr != nil && !errors.Is(rmErr, os.ErrNotExist) {
		return fmt.Errorf("petrel: removing stale unix socket %s: %w", path, rmErr)
	}
	return nil
}

// addrString formats a listening address as users write it: "host:port" for
// TCP and "unix:///path" for Unix sockets.
func addrString(a net.Addr) string {
	if a == nil {
		return ""
	}
	if a.Network() == "unix" {
		return "unix://" + a.String()
	}
	return a.String()
}
