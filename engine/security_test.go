package engine_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"io"
	"math/big"
	"net"
	"os"
	"runtime"
	"sync"
	"testing"
	"time"

	pclient "github.com/petrel-rpc/petrel/client"
	"github.com/petrel-rpc/petrel/codec"
	"github.com/petrel-rpc/petrel/engine"
	"github.com/petrel-rpc/petrel/internal/testnet"
)

// secPKI is a throwaway certificate authority with a server certificate
// for 127.0.0.1/localhost and a client certificate.
type secPKI struct {
	pool       *x509.CertPool
	serverCert tls.Certificate
	clientCert tls.Certificate
}

var (
	secOnce           sync.Once
	secMain, secRogue *secPKI
)

func secCerts(t testing.TB) (*secPKI, *secPKI) {
	t.Helper()
	secOnce.Do(func() {
		secMain = newSecPKI("petrel test CA")
		secRogue = newSecPKI("rogue CA")
	})
	return secMain, secRogue
}

func newSecPKI(name string) *secPKI {
	must := func(err error) {
		if err != nil {
			panic(err)
		}
	}
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	must(err)
	caTmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: name},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	must(err)
	ca, err := x509.ParseCertificate(caDER)
	must(err)
	leaf := func(serial int64, cn string, usage x509.ExtKeyUsage) tls.Certificate {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		must(err)
		tmpl := &x509.Certificate{
			SerialNumber: big.NewInt(serial),
			Subject:      pkix.Name{CommonName: cn},
			NotBefore:    time.Now().Add(-time.Hour),
			NotAfter:     time.Now().Add(24 * time.Hour),
			KeyUsage:     x509.KeyUsageDigitalSignature,
			ExtKeyUsage:  []x509.ExtKeyUsage{usage},
			DNSNames:     []string{"localhost"},
			IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
		must(err)
		return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
	}
	p := &secPKI{pool: x509.NewCertPool()}
	p.pool.AddCert(ca)
	p.serverCert = leaf(2, "server", x509.ExtKeyUsageServerAuth)
	p.clientCert = leaf(3, "alice", x509.ExtKeyUsageClientAuth)
	return p
}

// secServer starts a TLS server on variant v. mtls requires client
// certificates from the main CA.
func secServer(t *testing.T, v variant, mtls bool, mod func(*engine.Config)) *engine.Server {
	t.Helper()
	pki, _ := secCerts(t)
	tc := &tls.Config{Certificates: []tls.Certificate{pki.serverCert}, MinVersion: tls.VersionTLS12}
	if mtls {
		tc.ClientAuth = tls.RequireAndVerifyClientCert
		tc.ClientCAs = pki.pool
	}
	cfg := engine.Config{
		Addr:          "127.0.0.1:0",
		Engine:        v.kind,
		Inline:        v.inline,
		TLS:           tc,
		IgnoreSignals: true,
		Logger:        testnet.QuietLogger(),
		Handlers: map[string]engine.Handler{
			"echo": func(_ context.Context, r *engine.Request) (uint16, []byte, error) { return 200, r.Payload, nil },
			"whoami": func(_ context.Context, r *engine.Request) (uint16, []byte, error) {
				if r.Conn.TLS == nil || len(r.Conn.TLS.PeerCertificates) == 0 {
					return 1403, []byte("no client certificate"), nil
				}
				return 200, []byte(r.Conn.TLS.PeerCertificates[0].Subject.CommonName), nil
			},
		},
	}
	if mod != nil {
		mod(&cfg)
	}
	s, err := engine.Listen(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func secClientTLS(pki *secPKI, cert *tls.Certificate, version uint16) *tls.Config {
	tc := &tls.Config{RootCAs: pki.pool, ServerName: "localhost", MinVersion: version, MaxVersion: version}
	if cert != nil {
		tc.Certificates = []tls.Certificate{*cert}
	}
	return tc
}

// dialTLS connects a test client to srv (a secServer) over TLS, closed at
// cleanup.
func dialTLS(t *testing.T, srv *engine.Server) *client {
	t.Helper()
	pki, _ := secCerts(t)
	tc, err := tls.Dial("tcp", srv.AddrString(), secClientTLS(pki, nil, 0))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tc.Close() })
	return &client{t: t, nc: tc}
}

func secDial(t *testing.T, addr string, tc *tls.Config, key []byte) (*pclient.Client, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), ioTimeout)
	defer cancel()
	c, err := pclient.Dial(ctx, pclient.Config{Addr: addr, TLS: tc, HMACKey: key})
	if err == nil {
		t.Cleanup(func() { c.Close() })
	}
	return c, err
}

func secCall(t *testing.T, c *pclient.Client, req string, payload []byte) pclient.Response {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), ioTimeout)
	defer cancel()
	r, err := c.Call(ctx, req, payload)
	if err != nil {
		t.Fatalf("call %s: %v", req, err)
	}
	return r
}

func forEachVariant2(t *testing.T, fn func(t *testing.T, v variant)) {
	for _, v := range variants {
		t.Run(v.name, func(t *testing.T) {
			t.Parallel()
			fn(t, v)
		})
	}
}

func TestTLSEcho(t *testing.T) {
	pki, _ := secCerts(t)
	forEachVariant2(t, func(t *testing.T, v variant) {
		s := secServer(t, v, false, nil)
		for _, ver := range []uint16{tls.VersionTLS12, tls.VersionTLS13} {
			c, err := secDial(t, s.AddrString(), secClientTLS(pki, nil, ver), nil)
			if err != nil {
				t.Fatalf("dial TLS %x: %v", ver, err)
			}
			for _, size := range []int{0, 1, 64, 16 << 10, 100_000, 1 << 20} {
				p := make([]byte, size)
				rand.Read(p)
				r := secCall(t, c, "echo", p)
				if r.Status != 200 || string(r.Payload) != string(p) {
					t.Fatalf("TLS %x echo of %d bytes: status %d, %d bytes back", ver, size, r.Status, len(r.Payload))
				}
			}
		}
	})
}

func TestMutualTLS(t *testing.T) {
	pki, rogue := secCerts(t)
	forEachVariant2(t, func(t *testing.T, v variant) {
		s := secServer(t, v, true, nil)
		for _, ver := range []uint16{tls.VersionTLS12, tls.VersionTLS13} {
			c, err := secDial(t, s.AddrString(), secClientTLS(pki, &pki.clientCert, ver), nil)
			if err != nil {
				t.Fatalf("good client certificate refused (TLS %x): %v", ver, err)
			}
			if r := secCall(t, c, "whoami", nil); string(r.Payload) != "alice" {
				t.Fatalf("whoami = %d %q, want alice", r.Status, r.Payload)
			}
			// A certificate from another CA, and none at all, are refused:
			// in TLS 1.3 the client learns it on its first read, which Dial's
			// protocol check makes.
			if _, err := secDial(t, s.AddrString(), secClientTLS(pki, &rogue.clientCert, ver), nil); err == nil {
				t.Fatalf("TLS %x: client certificate from another CA accepted", ver)
			}
			if _, err := secDial(t, s.AddrString(), secClientTLS(pki, nil, ver), nil); err == nil {
				t.Fatalf("TLS %x: client without a certificate accepted", ver)
			}
		}
	})
}

// secExpectClosed reads from conn until the server closes it, failing if
// that takes longer than within.
func secExpectClosed(t *testing.T, conn net.Conn, within time.Duration) {
	t.Helper()
	conn.SetReadDeadline(time.Now().Add(within))
	_, err := io.Copy(io.Discard, conn)
	if testnet.IsTimeout(err) {
		t.Fatalf("connection still open after %v", within)
	}
}

func TestTLSHandshakeTimeout(t *testing.T) {
	forEachVariant2(t, func(t *testing.T, v variant) {
		s := secServer(t, v, false, func(c *engine.Config) { c.HandshakeTimeout = 200 * time.Millisecond })
		// Silent: connects and sends nothing.
		silent, err := net.Dial("tcp", s.AddrString())
		if err != nil {
			t.Fatal(err)
		}
		defer silent.Close()
		// Stalled: sends the first bytes of a ClientHello and stops.
		stalled, err := net.Dial("tcp", s.AddrString())
		if err != nil {
			t.Fatal(err)
		}
		defer stalled.Close()
		stalled.Write([]byte{0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00})
		start := time.Now()
		secExpectClosed(t, silent, 5*time.Second)
		secExpectClosed(t, stalled, 5*time.Second)
		if el := time.Since(start); el < 100*time.Millisecond {
			t.Errorf("closed after %v, before the handshake timeout", el)
		}
	})
}

func TestTLSGarbageClientHello(t *testing.T) {
	forEachVariant2(t, func(t *testing.T, v variant) {
		s := secServer(t, v, false, nil)
		conn, err := net.Dial("tcp", s.AddrString())
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		// A plaintext Petrel frame where a ClientHello belongs.
		f, _ := codec.AppendFrame(nil, codec.Frame{Seq: 1, Request: []byte("PROTOCHECK"), Payload: []byte{0}}, nil)
		conn.Write(f)
		secExpectClosed(t, conn, 5*time.Second)
		// The server is unharmed.
		pki, _ := secCerts(t)
		c, err := secDial(t, s.AddrString(), secClientTLS(pki, nil, tls.VersionTLS13), nil)
		if err != nil {
			t.Fatal(err)
		}
		secCall(t, c, "echo", []byte("still here"))
	})
}

func TestTLSManyHandshakes(t *testing.T) {
	n := 500
	if raceEnabled {
		n = 100
	}
	pki, _ := secCerts(t)
	for _, v := range variants {
		t.Run(v.name, func(t *testing.T) {
			// Every client comes from 127.0.0.1: beyond the address's
			// share of the handshake slots, they wait their turn.
			s := secServer(t, v, true, nil)
			var wg sync.WaitGroup
			errs := make(chan error, n)
			for i := 0; i < n; i++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
					defer cancel()
					c, err := pclient.Dial(ctx, pclient.Config{Addr: s.AddrString(), TLS: secClientTLS(pki, &pki.clientCert, 0)})
					if err != nil {
						errs <- err
						return
					}
					defer c.Close()
					if r, err := c.Call(ctx, "whoami", nil); err != nil || string(r.Payload) != "alice" {
						errs <- errors.Join(err, errors.New("whoami: "+string(r.Payload)))
					}
				}()
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				t.Fatalf("%d concurrent handshakes: %v", n, err)
			}
		})
	}
}

func TestTLSMaxHandshakes(t *testing.T) {
	s := secServer(t, variants[0], false, func(c *engine.Config) {
		c.MaxHandshakes = 1
		c.HandshakeTimeout = 10 * time.Second
	})
	// Two clients start a handshake (a whole first record: a slot is
	// taken only then) and stall: whichever the server sees second finds
	// the only slot taken and is closed at once; the other stays open
	// until the handshake timeout.
	var conns [2]net.Conn
	for i := range conns {
		c, err := net.Dial("tcp", s.AddrString())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.Write([]byte{0x16, 0x03, 0x01, 0x00, 0x04, 0x01, 0x00, 0x02, 0x00})
		conns[i] = c
	}
	closed := 0
	for _, c := range conns {
		c.SetReadDeadline(time.Now().Add(time.Second))
		if _, err := io.Copy(io.Discard, c); !testnet.IsTimeout(err) {
			closed++
		}
	}
	if closed != 1 {
		t.Fatalf("%d of 2 stalled handshakes closed, want exactly 1", closed)
	}
	if s.Stats().Refused != 1 {
		t.Fatalf("refused = %d, want 1", s.Stats().Refused)
	}
}

func TestTLSWithHMAC(t *testing.T) {
	pki, _ := secCerts(t)
	key := []byte("shared secret")
	forEachVariant2(t, func(t *testing.T, v variant) {
		s := secServer(t, v, true, func(c *engine.Config) { c.HMACKey = key })
		c, err := secDial(t, s.AddrString(), secClientTLS(pki, &pki.clientCert, 0), key)
		if err != nil {
			t.Fatal(err)
		}
		if r := secCall(t, c, "echo", []byte("signed and sealed")); string(r.Payload) != "signed and sealed" {
			t.Fatalf("echo = %q", r.Payload)
		}
		// The wrong key: the protocol check itself is answered 502.
		if _, err := secDial(t, s.AddrString(), secClientTLS(pki, &pki.clientCert, 0), []byte("wrong")); !errors.Is(err, codec.ErrBadMAC) {
			t.Fatalf("wrong key: err = %v, want codec.ErrBadMAC", err)
		}
		// No key on the client: no MAC follows the payload.
		if _, err := secDial(t, s.AddrString(), secClientTLS(pki, &pki.clientCert, 0), nil); err == nil {
			t.Fatal("client without the key accepted")
		}
	})
}

// TestTLSIdleGoroutines shows the reactor keeps no goroutine per
// established TLS connection.
func TestTLSIdleGoroutines(t *testing.T) {
	n := 2000
	if raceEnabled || testing.Short() {
		n = 200
	}
	pki, _ := secCerts(t)
	s := secServer(t, variants[0], false, nil)
	before := runtime.NumGoroutine()
	tc := secClientTLS(pki, nil, tls.VersionTLS13)
	conns := make([]*tls.Conn, 0, n)
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	req, _ := codec.AppendFrame(nil, codec.Frame{Seq: 1, Request: []byte("PROTOCHECK"), Payload: []byte{0}}, nil)
	buf := make([]byte, 64)
	for i := 0; i < n; i++ {
		c, err := tls.Dial("tcp", s.AddrString(), tc)
		if err != nil {
			t.Fatalf("connection %d: %v", i, err)
		}
		conns = append(conns, c)
		c.SetDeadline(time.Now().Add(ioTimeout))
		c.Write(req)
		if _, err := io.ReadFull(c, buf[:len(req)]); err != nil {
			t.Fatalf("connection %d: %v", i, err)
		}
	}
	if got := s.Stats().OpenConns; got != int64(n) {
		t.Fatalf("open connections = %d, want %d", got, n)
	}
	grew := runtime.NumGoroutine() - before
	t.Logf("%d idle TLS connections: goroutines %d -> %d", n, before, before+grew)
	if before+grew >= 100 {
		t.Fatalf("%d goroutines with %d idle TLS connections, want < 100", before+grew, n)
	}
}

func TestPeerCredentials(t *testing.T) {
	forEachVariant2(t, func(t *testing.T, v variant) {
		got := make(chan *engine.PeerCred, 1)
		s, err := engine.Listen(engine.Config{
			Addr: "unix://" + sockPath(t), Engine: v.kind, Inline: v.inline,
			IgnoreSignals: true, Logger: testnet.QuietLogger(),
			Handlers: map[string]engine.Handler{"who": func(_ context.Context, r *engine.Request) (uint16, []byte, error) {
				select {
				case got <- r.Conn.PeerCred:
				default:
				}
				return 200, nil, nil
			}},
		})
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		c, err := secDial(t, s.AddrString(), nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		secCall(t, c, "who", nil)
		pc := <-got
		if pc == nil {
			t.Fatal("no peer credentials on a Unix socket")
		}
		if pc.UID != uint32(os.Getuid()) || pc.GID != uint32(os.Getgid()) || pc.PID != int32(os.Getpid()) {
			t.Fatalf("peer credentials %+v, want uid %d gid %d pid %d", *pc, os.Getuid(), os.Getgid(), os.Getpid())
		}
	})
}
