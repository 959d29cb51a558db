package main_test

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/petrel-rpc/petrel/client"
	"github.com/petrel-rpc/petrel/codec"
)

// The flags this round added to the contract, on both engines: the key
// from -hmac-file (a keyed version-1 client gets through), -introspection,
// -nonblocking, the upload handler's 64 MiB limit beside the default 4 MiB
// one, and the timeouts and bounds being accepted.
func TestServerContractFlags(t *testing.T) {
	keyFile := filepath.Join(t.TempDir(), "key")
	if err := os.WriteFile(keyFile, []byte("s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, eng := range []string{"reactor", "std"} {
		t.Run(eng, func(t *testing.T) {
			p := start(t, "-addr", "127.0.0.1:0", "-engine", eng, "-hmac-file", keyFile, "-introspection",
				"-nonblocking", "echo,time", "-min-protocol", "1", "-write-timeout", "5s", "-handler-timeout", "5s",
				"-queue-timeout", "1s", "-shutdown-timeout", "5s", "-max-handshakes", "64", "-max-buffered", "200000000")
			ctx, cancel := context.WithTimeout(context.Background(), ioTimeout)
			defer cancel()
			c, err := client.Dial(ctx, client.Config{Addr: p.addr, HMACKey: []byte("s3cret"), MaxPayload: 64 << 20})
			if err != nil {
				t.Fatalf("keyed client: %v", err)
			}
			defer c.Close()
			if c.Version() != 1 {
				t.Errorf("version %d, want 1", c.Version())
			}
			if r, err := c.Call(ctx, "echo", []byte("hi")); err != nil || string(r.Payload) != "hi" {
				t.Fatalf("echo: %v %q", err, r.Payload)
			}
			if r, err := c.Call(ctx, "petrel.health", nil); err != nil || string(r.Payload) != "ok" {
				t.Fatalf("health: %v %q", err, r.Payload)
			}
			r, err := c.Call(ctx, "petrel.handlers", nil)
			if err != nil || !strings.Contains(string(r.Payload), `"name":"echo","nonBlocking":true`) {
				t.Fatalf("handlers: %v %s", err, r.Payload)
			}
			big := make([]byte, 5<<20)
			for i := range big {
				big[i] = byte(i)
			}
			sum := sha256.Sum256(big)
			if r, err := c.Call(ctx, "upload", big); err != nil || string(r.Payload) != fmt.Sprintf("%d %x", len(big), sum) {
				t.Fatalf("upload of 5 MiB: %v %q", err, r.Payload)
			}
			// Over echo's 4 MiB: refused 402 from the header. The client
			// reports the 402 even when it was still writing as the server
			// closed.
			_, err = c.Call(ctx, "echo", big)
			var se *codec.StatusError
			if !errors.As(err, &se) || se.Status != codec.StatusPayloadTooLarge {
				t.Fatalf("5 MiB echo: %v, want 402", err)
			}
		})
	}
}

func TestServerBadContractFlags(t *testing.T) {
	for _, args := range [][]string{
		{"-addr", "127.0.0.1:0", "-nonblocking", "nosuch"},
		{"-addr", "127.0.0.1:0", "-min-protocol", "2"},
		{"-addr", "127.0.0.1:0", "-hmac", "a", "-hmac-file", "/dev/null"},
		{"-addr", "127.0.0.1:0", "-hmac-file", "/nonexistent/key"},
	} {
		out, err := exec.Command(binary(t), args...).CombinedOutput()
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() == 0 {
			t.Errorf("%v: err %v, output %s", args, err, out)
		}
	}
}
