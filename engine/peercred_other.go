//go:build !linux && !darwin && !freebsd

package engine

import "net"

// Elsewhere there are no peer credentials: golang.org/x/sys (v0.50.0) has
// no wrapper for OpenBSD's SO_PEERCRED, NetBSD's LOCAL_PEEREID or
// DragonFly's LOCAL_PEERCRED, and Windows, Plan 9, js and wasip1 have no
// such facility. ConnInfo.PeerCred is nil there.

func peerCredFd(int) *PeerCred { return nil }

func peerCredOf(*net.UnixConn) *PeerCred { return nil }
