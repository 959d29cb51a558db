//go:build freebsd || netbsd || openbsd || dragonfly

package engine

import "golang.org/x/sys/unix"

// writev writes v to fd slice by slice, stopping at the first short
// write (golang.org/x/sys has no Writev here).
func writev(fd int, v [][]byte) (int, error) {
	total := 0
	for _, b := range v {
		n, err := unix.Write(fd, b)
		if n > 0 {
			total += n
		}
		if err != nil {
			return total, err
		}
		if n < len(b) {
			break
		}
	}
	return total, nil
}
