//go:build linux || darwin || freebsd

package engine

import "net"

// peerCredOf reads the peer's credentials from a Unix socket connection
// (see peerCredFd for what each platform reports).
func peerCredOf(uc *net.UnixConn) *PeerCred {
	raw, err := uc.SyscallConn()
	if err != nil {
		return nil
	}
	var pc *PeerCred
	if err := raw.Control(func(fd uintptr) { pc = peerCredFd(int(fd)) }); err != nil {
		return nil
	}
	return pc
}
