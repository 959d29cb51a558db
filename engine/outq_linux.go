package engine

import (
	"net"
	"syscall"

	"golang.org/x/sys/unix"
)

// unsentBytes returns the bytes the kernel still holds unsent in fd's
// send buffer (SIOCOUTQ), or 0 when it cannot tell.
func unsentBytes(fd int) int { return ioctlInt(fd, unix.SIOCOUTQ) }

// unreadBytes returns the bytes the kernel holds received on fd and not
// yet read (SIOCINQ), or 0 when it cannot tell: closing a TCP socket with
// some makes the kernel reset the connection.
func unreadBytes(fd int) int { return ioctlInt(fd, unix.SIOCINQ) }

func ioctlInt(fd int, req uint) int {
	n, err := unix.IoctlGetInt(fd, req)
	if err != nil {
		return 0
	}
	return n
}

// connUnsent is unsentBytes for a net.Conn.
func connUnsent(nc net.Conn) int { return connFD(nc, unsentBytes) }

// connUnread is unreadBytes for a net.Conn.
func connUnread(nc net.Conn) int { return connFD(nc, unreadBytes) }

// connFD applies f to nc's descriptor (under TLS, the socket's), or
// returns 0.
func connFD(nc net.Conn, f func(fd int) int) int {
	sc, ok := rawConn(nc).(syscall.Conn)
	if !ok {
		return 0
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return 0
	}
	n := 0
	rc.Control(func(fd uintptr) { n = f(int(fd)) })
	return n
}
