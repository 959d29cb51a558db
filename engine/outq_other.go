//go:build !linux

package engine

import "net"

// unsentBytes returns 0: without SIOCOUTQ, a slow reader's progress is
// seen only once the kernel's send buffer has room again.
func unsentBytes(int) int { return 0 }

// connUnsent is unsentBytes for a net.Conn.
func connUnsent(net.Conn) int { return 0 }

// unreadBytes returns 0: without SIOCINQ the drain cannot tell whether a
// close would reset the connection.
func unreadBytes(int) int { return 0 }

// connUnread is unreadBytes for a net.Conn.
func connUnread(net.Conn) int { return 0 }
