package main

// These tests build examples/server and this command with `go build`, run
// them, and check the command's stdout, stderr and exit status. Where
// examples/server lacks something (introspection handlers, a broken echo, a
// handler that counts), an engine server runs in the test process
// (engine_test.go).

import (
	"bufio"
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"
)

// binDir holds the built server and petrel binaries; buildErr says why
// they could not be built.
var (
	binDir   string
	buildErr error
)

func TestMain(m *testing.M) {
	// The goroutines before any test: gnet's worker pool, started when the
	// engine package is initialised.
	before := goleak.IgnoreCurrent()
	os.Exit(func() int {
		var err error
		if binDir, err = os.MkdirTemp("", "petrel-cmd"); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		defer os.RemoveAll(binDir)
		buildErr = build()
		code := m.Run()
		if err := goleak.Find(before); err != nil && code == 0 {
			fmt.Fprintln(os.Stderr, "goleak:", err)
			return 1
		}
		return code
	}())
}

func build() error {
	goTool, err := exec.LookPath("go")
	if err != nil {
		return err
	}
	for name, pkg := range map[string]string{
		"server": "github.com/petrel-rpc/petrel/examples/server",
		"petrel": "github.com/petrel-rpc/petrel/client/cmd/petrel",
	} {
		out, err := exec.Command(goTool, "build", "-o", filepath.Join(binDir, name), pkg).CombinedOutput()
		if err != nil {
			return fmt.Errorf("go build %s: %v\n%s", pkg, err, out)
		}
	}
	return nil
}

func needBinaries(t *testing.T) {
	t.Helper()
	if buildErr != nil {
		t.Fatalf("building the binaries: %v", buildErr)
	}
}

// startServer runs examples/server with args (plus -addr when args has
// none) and returns the address it printed. It is stopped with SIGTERM at
// cleanup.
func startServer(t *testing.T, args ...string) string {
	t.Helper()
	needBinaries(t)
	if !strings.Contains(strings.Join(args, " "), "-addr") {
		args = append([]string{"-addr", "127.0.0.1:0"}, args...)
	}
	cmd := exec.Command(filepath.Join(binDir, "server"), args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	line := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(out)
		if sc.Scan() {
			line <- sc.Text()
		}
		close(line)
		for sc.Scan() { // keep draining until the process exits
		}
		exited <- cmd.Wait()
	}()
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case err := <-exited:
			if err != nil {
				t.Errorf("server exit: %v\n%s", err, stderr.String())
			}
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-exited
			t.Errorf("server did not stop on SIGTERM")
		}
	})
	select {
	case l, ok := <-line:
		addr, found := strings.CutPrefix(l, "listening on ")
		if !ok || !found {
			t.Fatalf("server said %q; stderr:\n%s", l, stderr.String())
		}
		return addr
	case <-time.After(30 * time.Second):
		t.Fatal("server did not start within 30s")
	}
	return ""
}

type result struct {
	code           int
	stdout, stderr string
}

// petrel runs the command with stdin and returns what it did.
func petrel(t *testing.T, stdin string, args ...string) result {
	t.Helper()
	return petrelEnv(t, nil, stdin, args...)
}

// petrelEnv is petrel with env added to the environment.
func petrelEnv(t *testing.T, env []string, stdin string, args ...string) result {
	t.Helper()
	cmd := exec.Command(filepath.Join(binDir, "petrel"), args...)
	cmd.Env = append(os.Environ(), "PETREL_ADDR=", "PETREL_HMAC_KEY=")
	cmd.Env = append(cmd.Env, env...)
	cmd.Stdin = strings.NewReader(stdin)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		t.Fatal(err)
	}
	return result{cmd.ProcessState.ExitCode(), stdout.String(), stderr.String()}
}

func (r result) want(t *testing.T, code int, stdout string, stderr *regexp.Regexp) {
	t.Helper()
	if r.code != code || r.stdout != stdout || !stderr.MatchString(r.stderr) {
		t.Fatalf("got exit %d, stdout %q, stderr %q;\nwant exit %d, stdout %q, stderr matching %s",
			r.code, r.stdout, r.stderr, code, stdout, stderr)
	}
	if strings.Count(r.stderr, "\n") > 1 {
		t.Fatalf("stderr has more than one line: %q", r.stderr)
	}
}

var (
	empty      = regexp.MustCompile(`^$`)
	oneErrLine = regexp.MustCompile(`^petrel: [^\n]+\n$`)
)

func TestCall(t *testing.T) {
	for _, engine := range []string{"reactor", "std"} {
		t.Run(engine, func(t *testing.T) {
			addr := startServer(t, "-engine", engine, "-max-payload", "100000")
			unixAddr := "unix://" + filepath.Join(shortDir(t), "s")
			startServer(t, "-engine", engine, "-addr", unixAddr)
			for _, a := range []string{addr, unixAddr} {
				petrel(t, "", "-addr", a, "call", "echo", "hello").want(t, 0, "hello", empty)
				petrel(t, "", "-addr", a, "call", "echo").want(t, 0, "", empty)
				petrel(t, "from\nstdin\n", "-addr", a, "call", "echo", "-").want(t, 0, "from\nstdin\n", empty)
				petrel(t, "", "-addr", a, "call", "fail").want(t, 1, "", regexp.MustCompile(`^status 500: handler error\n$`))
				petrel(t, "", "-addr", a, "call", "panic").want(t, 1, "", regexp.MustCompile(`^status 500: `))
				petrel(t, "", "-addr", a, "call", "nope").want(t, 1, "", regexp.MustCompile(`^status 400: `))
				petrel(t, "", "-addr", a, "call", "").want(t, 1, "", regexp.MustCompile(`^status 401: `))
				r := petrel(t, "", "-addr", a, "call", "time")
				if _, err := time.Parse(time.RFC3339, r.stdout); r.code != 0 || err != nil {
					t.Fatalf("time: %+v", r)
				}
				petrel(t, "", "-addr", a, "-timeout", "200ms", "call", "sleep", "10s").
					want(t, 3, "", regexp.MustCompile(`^petrel: call "sleep": .*context deadline exceeded\n$`))
			}
			// Over the server's limit (TCP server: 100000 bytes): 402.
			petrel(t, strings.Repeat("x", 100001), "-addr", addr, "call", "echo", "-").
				want(t, 1, "", regexp.MustCompile(`^status 402: 100001 > 100000\n$`))
			// Over the command's own limit: refused before sending.
			petrel(t, strings.Repeat("x", 11), "-addr", addr, "-max-payload", "10", "call", "echo", "-").
				want(t, 3, "", regexp.MustCompile(`^petrel: payload on stdin: .*11 > 10\n$`))
		})
	}
}

// keyedProto returns the -protocol flags a call with key to the server at
// addr needs: none when it speaks version 1; "-protocol 0" when it speaks
// only version 0 (as the engines do until they speak version 1), since a
// keyed client refuses to fall back to it.
func keyedProto(t *testing.T, addr, key string) []string {
	t.Helper()
	if speaksV1(t, addr, key) {
		return nil
	}
	return []string{"-protocol", "0"}
}

// speaksV1 reports whether the server at addr, whose key is key ("" for
// none), speaks protocol version 1.
func speaksV1(t *testing.T, addr, key string) bool {
	t.Helper()
	r := petrel(t, "", "-addr", addr, "-hmac", key, "-protocol", "1", "-timeout", "5s", "call", "no-such-request")
	if r.code == 3 && !strings.Contains(r.stderr, "server speaks protocol version 0, client speaks 1") {
		t.Fatalf("probing for version 1: %+v", r)
	}
	return r.code != 3
}

func TestHMAC(t *testing.T) {
	addr := startServer(t, "-hmac", "sekrit")
	proto := keyedProto(t, addr, "sekrit")
	petrel(t, "", append(proto, "-addr", addr, "-hmac", "sekrit", "call", "echo", "signed")...).want(t, 0, "signed", empty)
	petrel(t, "", append(proto, "-addr", addr, "-hmac", "wrong", "call", "echo", "x")...).
		want(t, 3, "", regexp.MustCompile(`^petrel: dial .*HMAC verification failed\n$`))
	// Auto refuses a keyed session on version 0.
	if proto != nil {
		petrel(t, "", "-addr", addr, "-hmac", "sekrit", "call", "echo", "x").
			want(t, 3, "", regexp.MustCompile(`^petrel: dial .*requires version 1 .*; -protocol 0 speaks version 0 with this server\n$`))
	}
}

func TestHMACKeySources(t *testing.T) {
	addr := startServer(t, "-hmac", "sekrit")
	proto := keyedProto(t, addr, "sekrit")
	dir := t.TempDir()
	file := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	ok := regexp.MustCompile(`^$`)
	bad := regexp.MustCompile(`^petrel: dial .*HMAC verification failed\n$`)
	call := append(proto, "-addr", addr)
	args := func(a ...string) []string { return append(append([]string(nil), call...), a...) }

	// -hmac-file: one trailing newline stripped, no more.
	petrel(t, "", args("-hmac-file", file("nl", "sekrit\n"), "call", "echo", "f")...).want(t, 0, "f", ok)
	petrel(t, "", args("-hmac-file", file("bare", "sekrit"), "call", "echo", "f")...).want(t, 0, "f", ok)
	petrel(t, "", args("-hmac-file", file("two", "sekrit\n\n"), "call", "echo", "f")...).want(t, 3, "", bad)
	// $PETREL_HMAC_KEY, below both flags.
	env := []string{"PETREL_HMAC_KEY=sekrit"}
	petrelEnv(t, env, "", args("call", "echo", "e")...).want(t, 0, "e", ok)
	wrongEnv := []string{"PETREL_HMAC_KEY=wrong"}
	petrelEnv(t, wrongEnv, "", args("call", "echo", "e")...).want(t, 3, "", bad)
	petrelEnv(t, wrongEnv, "", args("-hmac", "sekrit", "call", "echo", "e")...).want(t, 0, "e", ok)
	petrelEnv(t, wrongEnv, "", args("-hmac-file", file("nl2", "sekrit\n"), "call", "echo", "e")...).want(t, 0, "e", ok)
	// Mistakes.
	petrel(t, "", args("-hmac-file", file("k", "sekrit"), "-hmac", "sekrit", "call", "echo")...).
		want(t, 2, "", regexp.MustCompile(`^petrel: -hmac-file and -hmac .*\n$`))
	petrel(t, "", args("-hmac-file", file("empty", "\n"), "call", "echo")...).
		want(t, 2, "", regexp.MustCompile(`^petrel: -hmac-file: .* holds no key\n$`))
	petrel(t, "", args("-hmac-file", filepath.Join(dir, "none"), "call", "echo")...).
		want(t, 3, "", regexp.MustCompile(`^petrel: -hmac-file: .*no such file`))
}

func TestProtocolFlag(t *testing.T) {
	addr := startServer(t)
	v1 := speaksV1(t, addr, "")
	version := map[bool]string{false: "0", true: "1"}[v1]
	verbose := func(v string) *regexp.Regexp {
		return regexp.MustCompile(`^petrel: status 200 success, seq 2, request "echo", protocol ` + v + `, round trip [0-9.]+(ns|µs|ms|s)\n$`)
	}
	petrel(t, "", "-addr", addr, "-v", "call", "echo", "a").want(t, 0, "a", verbose(version))
	petrel(t, "", "-addr", addr, "-v", "-protocol", "auto", "call", "echo", "a").want(t, 0, "a", verbose(version))
	petrel(t, "", "-addr", addr, "-v", "-protocol", "0", "call", "echo", "a").want(t, 0, "a", verbose("0"))
	r := petrel(t, "", "-addr", addr, "-protocol", "1", "call", "echo", "a")
	if v1 {
		r.want(t, 0, "a", empty)
	} else {
		r.want(t, 3, "", regexp.MustCompile(`^petrel: dial .*server speaks protocol version 0, client speaks 1\n$`))
	}
	petrel(t, "", "-addr", addr, "-protocol", "2", "call", "echo").
		want(t, 2, "", regexp.MustCompile(`^petrel: -protocol "2": want auto, 0 or 1\n$`))
}

func TestVerbose(t *testing.T) {
	addr := startServer(t)
	r := petrel(t, "", "-addr", addr, "-v", "call", "fail")
	if r.code != 1 || r.stdout != "" ||
		!regexp.MustCompile(`^petrel: status 500 handler error, seq 2, request "fail", protocol \d, round trip [^\n]+\nstatus 500: handler error\n$`).MatchString(r.stderr) {
		t.Fatalf("-v with a 500: %+v", r)
	}
	// No answer, no -v line.
	petrel(t, "", "-addr", addr, "-v", "-timeout", "200ms", "call", "sleep", "10s").
		want(t, 3, "", regexp.MustCompile(`^petrel: call "sleep": .*context deadline exceeded\n$`))
}

func TestTLS(t *testing.T) {
	f := writePKI(t)
	addr := startServer(t, "-tls-cert", f.serverCert, "-tls-key", f.serverKey, "-tls-client-ca", f.ca)
	petrel(t, "", "-addr", addr, "-tls-ca", f.ca, "-tls-cert", f.clientCert, "-tls-key", f.clientKey,
		"-tls-name", "petrel.test", "call", "echo", "secure").want(t, 0, "secure", empty)
	// Without a client certificate the server refuses the handshake.
	r := petrel(t, "", "-addr", addr, "-tls-ca", f.ca, "-tls-name", "petrel.test", "call", "echo", "x")
	r.want(t, 3, "", oneErrLine)
	// An unknown authority.
	r = petrel(t, "", "-addr", addr, "-tls", "-tls-name", "petrel.test", "call", "echo", "x")
	r.want(t, 3, "", regexp.MustCompile(`^petrel: dial .*certificate`))
	// Plain text to a TLS server, TLS to a plain server: errors, not hangs.
	petrel(t, "", "-addr", addr, "-timeout", "2s", "call", "echo", "x").want(t, 3, "", oneErrLine)
	plain := startServer(t)
	petrel(t, "", "-addr", plain, "-tls", "-timeout", "2s", "call", "echo", "x").want(t, 3, "", oneErrLine)
	// Missing files.
	petrel(t, "", "-addr", addr, "-tls-ca", "/nonexistent", "call", "echo").want(t, 3, "", oneErrLine)
	petrel(t, "", "-addr", addr, "-tls-cert", f.clientCert, "call", "echo").want(t, 2, "", oneErrLine)
}

func TestNoServer(t *testing.T) {
	needBinaries(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	petrel(t, "", "-addr", addr, "call", "echo").
		want(t, 3, "", regexp.MustCompile(`^petrel: dial .*connection refused\n$`))
	petrel(t, "", "-addr", "unix:///nonexistent/s", "call", "echo").
		want(t, 3, "", regexp.MustCompile(`^petrel: dial .*no such file or directory\n$`))
}

func TestUsage(t *testing.T) {
	needBinaries(t)
	r := petrel(t, "")
	if r.code != 2 || !strings.Contains(r.stderr, "usage: petrel") {
		t.Fatalf("no arguments: %+v", r)
	}
	petrel(t, "", "call", "echo").want(t, 2, "", regexp.MustCompile(`^petrel: no server address`))
	petrel(t, "", "-addr", "x:1", "call").want(t, 2, "", oneErrLine)
	petrel(t, "", "-addr", "x:1", "frobnicate").want(t, 2, "", oneErrLine)
	petrel(t, "", "-addr", "nonsense", "call", "echo").want(t, 3, "", regexp.MustCompile(`invalid client config`))
	if r := petrel(t, "", "-bogus"); r.code != 2 {
		t.Fatalf("unknown flag: %+v", r)
	}
}

func TestRepl(t *testing.T) {
	for _, engine := range []string{"reactor", "std"} {
		t.Run(engine, func(t *testing.T) {
			addr := startServer(t, "-engine", engine, "-hmac", "k")
			keyed := append(keyedProto(t, addr, "k"), "-addr", addr, "-hmac", "k")
			in := "echo one\n\necho two words\nnope\nfail\necho three\n"
			r := petrel(t, in, append(keyed, "repl")...)
			if r.code != 1 || r.stdout != "one\ntwo words\nthree\n" ||
				!regexp.MustCompile(`^status 400: .*\nstatus 500: handler error\n$`).MatchString(r.stderr) {
				t.Fatalf("repl: %+v", r)
			}
			petrel(t, "echo a\necho b\n", append(keyed, "repl")...).want(t, 0, "a\nb\n", empty)

			// A closed connection ends the session.
			r = petrel(t, "echo a\nsleep 10s\necho b\n", append(keyed, "-timeout", "200ms", "repl")...)
			if r.code != 3 || r.stdout != "a\n" || !strings.Contains(r.stderr, "call timeout 200ms exceeded") {
				t.Fatalf("repl with a timeout: %+v", r)
			}
		})
	}
}

// shortDir returns a short temporary directory for Unix sockets.
func shortDir(t *testing.T) string {
	dir, err := os.MkdirTemp("", "pt")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

type pkiFiles struct {
	ca, serverCert, serverKey, clientCert, clientKey string
}

// writePKI writes a throwaway CA, a server certificate for 127.0.0.1 and
// petrel.test, and a client certificate, as PEM files.
func writePKI(t *testing.T) pkiFiles {
	t.Helper()
	dir := t.TempDir()
	now := time.Now()
	write := func(name, typ string, der []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	key := func() *ecdsa.PrivateKey {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	caKey := key()
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "petrel test CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	var f pkiFiles
	f.ca = write("ca.pem", "CERTIFICATE", caDER)
	leaf := func(name string, serial int64, usage x509.ExtKeyUsage) (string, string) {
		k := key()
		tmpl := &x509.Certificate{
			SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: name},
			NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour),
			KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{usage},
			DNSNames: []string{"petrel.test"}, IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &k.PublicKey, caKey)
		if err != nil {
			t.Fatal(err)
		}
		kder, _ := x509.MarshalECPrivateKey(k)
		return write(name+".pem", "CERTIFICATE", der), write(name+".key", "EC PRIVATE KEY", kder)
	}
	f.serverCert, f.serverKey = leaf("server", 2, x509.ExtKeyUsageServerAuth)
	f.clientCert, f.clientKey = leaf("client", 3, x509.ExtKeyUsageClientAuth)
	return f
}
