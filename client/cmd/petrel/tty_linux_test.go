package main

import (
	"bytes"
	"io"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

// openPTY returns both ends of a new pseudo-terminal, its output
// post-processing off (so that "\n" stays "\n"), closed at cleanup. It
// skips the test when the system has no pseudo-terminals to give.
func openPTY(t *testing.T) (master, tty *os.File) {
	t.Helper()
	master, err := os.OpenFile("/dev/ptmx", os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		t.Skipf("no pseudo-terminal: %v", err)
	}
	t.Cleanup(func() { master.Close() })
	fd := int(master.Fd())
	if err := unix.IoctlSetPointerInt(fd, unix.TIOCSPTLCK, 0); err != nil {
		t.Skipf("unlocking the pseudo-terminal: %v", err)
	}
	n, err := unix.IoctlGetInt(fd, unix.TIOCGPTN)
	if err != nil {
		t.Skipf("pseudo-terminal number: %v", err)
	}
	tty, err = os.OpenFile("/dev/pts/"+strconv.Itoa(n), os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		t.Skipf("opening the pseudo-terminal: %v", err)
	}
	t.Cleanup(func() { tty.Close() })
	tio, err := unix.IoctlGetTermios(int(tty.Fd()), unix.TCGETS)
	if err != nil {
		t.Skipf("terminal attributes: %v", err)
	}
	tio.Oflag &^= unix.OPOST
	if err := unix.IoctlSetTermios(int(tty.Fd()), unix.TCSETS, tio); err != nil {
		t.Skipf("terminal attributes: %v", err)
	}
	return master, tty
}

// onTerminal runs the command in this process with stdout (or stderr, with
// toStderr) on a terminal, and returns the exit status, what the terminal
// got and what the other stream got.
func onTerminal(t *testing.T, toStderr bool, args ...string) (code int, term, other string) {
	t.Helper()
	master, tty := openPTY(t)
	read := make(chan []byte, 1)
	go func() {
		b, _ := io.ReadAll(master) // ends with EIO once tty is closed and read dry
		read <- b
	}()
	var buf bytes.Buffer
	if toStderr {
		code = run(args, strings.NewReader(""), &buf, tty)
	} else {
		code = run(args, strings.NewReader(""), tty, &buf)
	}
	tty.Close()
	return code, string(<-read), buf.String()
}

// On a terminal, call ends the payload with a newline; elsewhere it writes
// it as it is (TestCall).
func TestCallOnTerminal(t *testing.T) {
	addr := startServer(t)
	for _, tc := range []struct{ payload, want string }{
		{"hello", "hello\n"},
		{"hello\n", "hello\n"},
		{"", "\n"},
	} {
		code, term, other := onTerminal(t, false, "-addr", addr, "call", "echo", tc.payload)
		if code != 0 || term != tc.want || other != "" {
			t.Fatalf("%q: exit %d, terminal %q, stderr %q; want %q", tc.payload, code, term, other, tc.want)
		}
	}
}

// On a terminal, bench keeps a progress line on stderr, and erases it at
// the end.
func TestBenchProgressOnTerminal(t *testing.T) {
	addr := startServer(t)
	code, term, report := onTerminal(t, true, "-addr", addr, "bench", "-c", "2", "-d", "600ms", "echo", "x")
	if code != 0 || !strings.HasSuffix(term, "\r\033[K") || !strings.Contains(report, "errors:    none") {
		t.Fatalf("exit %d, terminal %q, report %q", code, term, report)
	}
	t.Logf("terminal: %q", term)
}
