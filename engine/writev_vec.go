//go:build linux || darwin

package engine

import "golang.org/x/sys/unix"

// writev writes v to fd in one system call.
func writev(fd int, v [][]byte) (int, error) { return unix.Writev(fd, v) }
