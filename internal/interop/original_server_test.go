package interop_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	oserver "github.com/firepear/petrel/server"

	"github.com/petrel-rpc/petrel/client"
	"github.com/petrel-rpc/petrel/codec"
)

// Our client and our petrel command against the original server.

// originalLimit is the original server's payload limit (its Xferlim) in
// these tests.
const originalLimit = 1000

func TestClientToOriginalServer(t *testing.T) {
	addr := startOriginal(t, oserver.Config{Xferlim: originalLimit}, originalHandlers())

	dial := func(t *testing.T) *client.Client {
		t.Helper()
		c, err := client.Dial(withTimeout(t), client.Config{Addr: addr, DialTimeout: ioTimeout, CallTimeout: ioTimeout})
		if err != nil {
			t.Fatalf("Dial(%s), the original server: %v", addr, err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	// echo calls echo and checks the answer.
	echo := func(t *testing.T, c *client.Client, p []byte) {
		t.Helper()
		resp, err := c.Call(withTimeout(t), "echo", p)
		if err != nil {
			t.Fatalf("echo of %d bytes: %v", len(p), err)
		}
		if resp.Status != 200 || resp.Request != "echo" || !bytes.Equal(resp.Payload, p) {
			t.Fatalf("echo: status %d request %q payload %s, want 200 %s", resp.Status, resp.Request, show(resp.Payload), show(p))
		}
	}
	// statusErr checks that err is a *codec.StatusError with status st.
	statusErr := func(t *testing.T, err error, st codec.Status) *codec.StatusError {
		t.Helper()
		var se *codec.StatusError
		if !errors.As(err, &se) || se.Status != st {
			t.Fatalf("got %v, want a status error %d", err, st)
		}
		return se
	}

	t.Run("echo", func(t *testing.T) {
		c := dial(t)
		// The original answers a version-1 PROTOCHECK with 497 and 0x00;
		// the client then speaks version 0.
		if v := c.Version(); v != 0 {
			t.Fatalf("protocol version %d with the original server, want 0", v)
		}
		for _, n := range []int{0, 1, 127, 128, 129, 255, 256, originalLimit} {
			echo(t, c, pattern(n))
		}
	})
	// Up to 100 KB, from a server without a limit. Our client writes a
	// payload over 32 KiB with a vectored write, apart from its header.
	t.Run("echo unlimited", func(t *testing.T) {
		unlimited := startOriginal(t, oserver.Config{}, originalHandlers())
		c, err := client.Dial(withTimeout(t), client.Config{Addr: unlimited, DialTimeout: ioTimeout, CallTimeout: ioTimeout})
		if err != nil {
			t.Fatalf("Dial(%s), the original server: %v", unlimited, err)
		}
		t.Cleanup(func() { c.Close() })
		for _, n := range []int{4096, 32<<10 + 1, 64 << 10, 100 << 10, 0} {
			echo(t, c, pattern(n))
		}
	})
	// The original answers 400 with the previous answer's payload (a known
	// defect), so only the status is checked. The connection stays usable.
	t.Run("unknown request", func(t *testing.T) {
		c := dial(t)
		resp, err := c.Call(withTimeout(t), "nope", []byte("x"))
		statusErr(t, err, codec.StatusNoHandler)
		if resp.Request != "nope" {
			t.Errorf("400 answer's request %q, want %q", resp.Request, "nope")
		}
		echo(t, c, []byte("after 400"))
	})
	// The original sends a failing handler's payload with its 500; the
	// connection stays usable.
	t.Run("handler error", func(t *testing.T) {
		c := dial(t)
		_, err := c.Call(withTimeout(t), "fail", []byte("x"))
		if se := statusErr(t, err, codec.StatusHandlerError); se.Reason != "failing as asked" {
			t.Errorf("500 reason %q, want the handler's payload %q", se.Reason, "failing as asked")
		}
		echo(t, c, []byte("after 500"))
	})
	// The original reads the request text before it refuses the payload,
	// so its 402 echoes it; then it closes, and so does our client.
	t.Run("over the limit", func(t *testing.T) {
		c := dial(t)
		resp, err := c.Call(withTimeout(t), "echo", pattern(2*originalLimit))
		if se := statusErr(t, err, codec.StatusPayloadTooLarge); se.Reason != "2000 > 1000" {
			t.Errorf("402 reason %q, want %q", se.Reason, "2000 > 1000")
		}
		if resp.Request != "echo" {
			t.Errorf("402 answer's request %q, want %q", resp.Request, "echo")
		}
		if !errors.Is(c.Err(), client.ErrClosed) {
			t.Errorf("client after a 402: Err() = %v, want ErrClosed", c.Err())
		}
	})
}

func TestCLIToOriginalServer(t *testing.T) {
	addr := startOriginal(t, oserver.Config{Xferlim: originalLimit}, originalHandlers())
	bin := buildCLI(t)

	// run runs the petrel command with args and stdin, and returns its
	// exit status, stdout and stderr.
	run := func(t *testing.T, stdin []byte, args ...string) (int, []byte, string) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 2*ioTimeout)
		defer cancel()
		cmd := exec.CommandContext(ctx, bin, append([]string{"-addr", addr, "-timeout", ioTimeout.String()}, args...)...)
		cmd.Env = cleanEnv()
		cmd.Stdin = bytes.NewReader(stdin)
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		err := cmd.Run()
		var ee *exec.ExitError
		if err != nil && !errors.As(err, &ee) {
			t.Fatalf("petrel %v: %v", args, err)
		}
		return cmd.ProcessState.ExitCode(), stdout.Bytes(), stderr.String()
	}
	// expectStatus checks a run that got an answer with a non-2xx status.
	expectStatus := func(t *testing.T, code int, stderr, want string) {
		t.Helper()
		if code != 1 || !strings.HasPrefix(stderr, want) {
			t.Fatalf("exit status %d, stderr %q; want 1 and %q…", code, stderr, want)
		}
	}

	t.Run("echo", func(t *testing.T) {
		code, out, stderr := run(t, nil, "call", "echo", "hello, original")
		if code != 0 || string(out) != "hello, original" {
			t.Fatalf("exit status %d, stdout %q, stderr %q; want 0, %q", code, out, stderr, "hello, original")
		}
		p := pattern(originalLimit)
		code, out, stderr = run(t, p, "call", "echo", "-")
		if code != 0 || !bytes.Equal(out, p) {
			t.Fatalf("echo of stdin: exit status %d, stdout %s, stderr %q", code, show(out), stderr)
		}
	})
	t.Run("unknown request", func(t *testing.T) {
		code, _, stderr := run(t, nil, "call", "nope", "x")
		expectStatus(t, code, stderr, "status 400")
	})
	t.Run("handler error", func(t *testing.T) {
		code, _, stderr := run(t, nil, "call", "fail", "x")
		expectStatus(t, code, stderr, "status 500: failing as asked")
	})
	t.Run("over the limit", func(t *testing.T) {
		code, _, stderr := run(t, pattern(2*originalLimit), "call", "echo", "-")
		expectStatus(t, code, stderr, "status 402: 2000 > 1000")
	})
}

// buildCLI builds the petrel command into a temporary directory and
// returns its path.
func buildCLI(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "petrel")
	cmd := exec.Command("go", "build", "-o", bin, "../../client/cmd/petrel")
	cmd.Env = append(cleanEnv(), "GOWORK=off")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build ../../client/cmd/petrel: %v\n%s", err, out)
	}
	return bin
}

// cleanEnv is the environment without the petrel command's own variables,
// so that the caller's settings cannot change what a test runs.
func cleanEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "PETREL_ADDR=") && !strings.HasPrefix(kv, "PETREL_HMAC_KEY=") && !strings.HasPrefix(kv, "GOWORK=") {
			env = append(env, kv)
		}
	}
	return env
}
