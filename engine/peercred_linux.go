package engine

import "golang.org/x/sys/unix"

// peerCredFd reads SO_PEERCRED from a Unix socket's descriptor: the uid,
// gid and pid of the peer process when it called connect(2) (the pid is 0
// when the peer is in another pid namespace).
func peerCredFd(fd int) *PeerCred {
	cred, err := unix.GetsockoptUcred(fd, unix.SOL_SOCKET, unix.SO_PEERCRED)
	if err != nil || cred == nil {
		return nil
	}
	return &PeerCred{PID: cred.Pid, UID: cred.Uid, GID: cred.Gid}
}
