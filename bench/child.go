package bench

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"
)

// child is a server-role process started by the parent. Its methods are
// called from one goroutine.
type child struct {
	system string
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	lines  chan string // stdout lines; closed at EOF; the reader goroutine owns stdout
	stderr *tailBuffer
	addr   string
}

// startChild starts the server role with args and waits for its
// "listening on" line.
func startChild(ctx context.Context, command func(args []string) *exec.Cmd, system string, args []string) (*child, error) {
	return startProc(ctx, command, system, args, "listening on ", 20*time.Second)
}

// expect returns the rest of the next stdout line that starts with prefix,
// skipping other lines (a library may log to stdout), within 20 s.
func (c *child) expect(ctx context.Context, prefix string) (string, error) {
	return c.expectWithin(ctx, prefix, 20*time.Second)
}

// expectWithin is expect with the given timeout.
func (c *child) expectWithin(ctx context.Context, prefix string, timeout time.Duration) (string, error) {
	t := time.NewTimer(timeout)
	defer t.Stop()
	for {
		select {
		case line, ok := <-c.lines:
			if !ok {
				return "", fmt.Errorf("bench: server %s exited: %s", c.system, c.stderr.tail())
			}
			if rest, ok := strings.CutPrefix(line, prefix); ok {
				return rest, nil
			}
			if rest, ok := strings.CutPrefix(line, "error "); ok {
				return "", fmt.Errorf("bench: server %s: %s", c.system, rest)
			}
		case <-t.C:
			return "", fmt.Errorf("bench: server %s did not say %q within %v: %s", c.system, prefix, timeout, c.stderr.tail())
		case <-ctx.Done():
			return "", ctx.Err()
		}
	}
}

// stats asks the child for its figures; free returns freed memory to the OS
// first.
func (c *child) stats(ctx context.Context, free bool) (ServerStats, error) {
	cmd := "stats\n"
	if free {
		cmd = "stats free\n"
	}
	if _, err := io.WriteString(c.stdin, cmd); err != nil {
		return ServerStats{}, fmt.Errorf("bench: server %s control channel: %w (%s)", c.system, err, c.stderr.tail())
	}
	js, err := c.expect(ctx, "stats ")
	if err != nil {
		return ServerStats{}, err
	}
	var st ServerStats
	if err := json.Unmarshal([]byte(js), &st); err != nil {
		return ServerStats{}, fmt.Errorf("bench: server %s stats: %w", c.system, err)
	}
	return st, nil
}

// stop closes the child's stdin, which ends it, and waits for it; a child
// that does not exit within 5 s is killed.
func (c *child) stop() error {
	c.stdin.Close()
	t := time.NewTimer(5 * time.Second)
	defer t.Stop()
	killed := false
	for done := false; !done; {
		select {
		case _, ok := <-c.lines:
			done = !ok
		case <-t.C:
			c.cmd.Process.Kill()
			killed = true
			for range c.lines {
			}
			done = true
		}
	}
	err := c.cmd.Wait()
	if killed {
		return fmt.Errorf("bench: server %s did not exit; killed", c.system)
	}
	if err != nil {
		return fmt.Errorf("bench: server %s: %w: %s", c.system, err, c.stderr.tail())
	}
	return nil
}

// tailBuffer keeps the last max bytes written to it.
type tailBuffer struct {
	mu  sync.Mutex // guards buf
	max int
	buf []byte
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.buf = append(t.buf, p...)
	if len(t.buf) > t.max {
		t.buf = append(t.buf[:0], t.buf[len(t.buf)-t.max:]...)
	}
	return len(p), nil
}

func (t *tailBuffer) tail() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	s := strings.TrimSpace(string(t.buf))
	if s == "" {
		return "(no output on stderr)"
	}
	return s
}

// tlsFiles writes a fresh self-signed certificate and key for the name
// "petrel-bench" into dir and returns their paths and a client
// configuration that trusts it.
func tlsFiles(dir string) (certFile, keyFile string, client *tls.Config, err error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return "", "", nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "petrel-bench"},
		DNSNames:     []string{"petrel-bench"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return "", "", nil, err
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return "", "", nil, err
	}
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	err = errors.Join(
		os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600),
		os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), 0o600))
	if err != nil {
		return "", "", nil, err
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return "", "", nil, err
	}
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return certFile, keyFile, &tls.Config{RootCAs: pool, ServerName: "petrel-bench", MinVersion: tls.VersionTLS13}, nil
}
