package engine

import (
	"unsafe"

	"golang.org/x/sys/unix"
)

// xucred is FreeBSD's struct xucred (<sys/ucred.h>). golang.org/x/sys
// declares the trailing union { void *_cr_unused1; pid_t cr_pid; } as a
// blank pointer, which hides the pid; this copy declares it without a
// pointer, aligned as the union is.
type xucred struct {
	version uint32
	uid     uint32
	ngroups int16
	groups  [16]uint32
	_       [0]uintptr                           // the union's alignment
	pid     [unsafe.Sizeof(uintptr(0)) / 4]int32 // the union; cr_pid is its first 4 bytes
}

// The copy has the kernel's size on every architecture.
var (
	_ [unix.SizeofXucred - unsafe.Sizeof(xucred{})]byte
	_ [unsafe.Sizeof(xucred{}) - unix.SizeofXucred]byte
)

// xucredVersion is XUCRED_VERSION from <sys/ucred.h>.
const xucredVersion = 0

// peerCredFd reads LOCAL_PEERCRED from a Unix socket's descriptor: the
// peer's effective uid and gid as they were when it connected, and its pid
// (cr_pid, filled in since FreeBSD 13; 0 on older kernels).
func peerCredFd(fd int) *PeerCred {
	var x xucred
	n := uint32(unsafe.Sizeof(x))
	_, _, errno := unix.Syscall6(unix.SYS_GETSOCKOPT, uintptr(fd), unix.SOL_LOCAL, unix.LOCAL_PEERCRED,
		uintptr(unsafe.Pointer(&x)), uintptr(unsafe.Pointer(&n)), 0)
	if errno != 0 || x.version != xucredVersion || x.ngroups < 1 {
		return nil
	}
	return &PeerCred{PID: x.pid[0], UID: x.uid, GID: x.groups[0]}
}
