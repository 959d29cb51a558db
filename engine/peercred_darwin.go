package engine

import "golang.org/x/sys/unix"

// xucredVersion is XUCRED_VERSION from <sys/ucred.h>.
const xucredVersion = 0

// peerCredFd reads LOCAL_PEERCRED from a Unix socket's descriptor: the
// peer's effective uid and gid as they were when it connected. The pid
// comes from LOCAL_PEERPID, which reports the process that last used the
// peer's socket (the one that connected, unless it passed the socket on);
// it is 0 if that option fails.
func peerCredFd(fd int) *PeerCred {
	x, err := unix.GetsockoptXucred(fd, unix.SOL_LOCAL, unix.LOCAL_PEERCRED)
	if err != nil || x == nil || x.Version != xucredVersion || x.Ngroups < 1 {
		return nil
	}
	pc := &PeerCred{UID: x.Uid, GID: x.Groups[0]}
	if pid, err := unix.GetsockoptInt(fd, unix.SOL_LOCAL, unix.LOCAL_PEERPID); err == nil {
		pc.PID = int32(pid)
	}
	return pc
}
