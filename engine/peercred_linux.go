package engine

import (
	"net"

	"golang.org/x/sys/unix"
)

// peerCredOf reads SO_PEERCRED from a Unix socket connection.
func peerCredOf(uc *net.UnixConn) *PeerCred {
	raw, err := uc.SyscallConn()
	if err != nil {
		return nil
	}
	var cred *unix.Ucred
	var cerr error
	raw.Control(func(fd uintptr) { cred, cerr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED) })
	return credFrom(cred, cerr)
}

// peerCredFd reads SO_PEERCRED from a socket file descriptor.
func peerCredFd(fd int) *PeerCred {
	cred, err := unix.GetsockoptUcred(fd, unix.SOL_SOCKET, unix.SO_PEERCRED)
	return credFrom(cred, err)
}

func credFrom(cred *unix.Ucred, err error) *PeerCred {
	if err != nil || cred == nil {
		return nil
	}
	return &PeerCred{PID: cred.Pid, UID: cred.Uid, GID: cred.Gid}
}
