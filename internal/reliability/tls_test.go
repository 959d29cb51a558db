package reliability_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/binary"
	"fmt"
	"io"
	"math/big"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/petrel-rpc/petrel/engine"
	"github.com/petrel-rpc/petrel/internal/testnet"
)

// testCert returns a server certificate for 127.0.0.1 and a pool that
// trusts it.
func testCert(t testing.TB) (tls.Certificate, *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "petrel test"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		KeyUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IsCA:         true, BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: cert}, pool
}

// clientHello returns the first TLS record a client sends: its ClientHello.
func clientHello(t testing.TB, roots *x509.CertPool) []byte {
	t.Helper()
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), ioTimeout)
		defer cancel()
		tls.Client(a, &tls.Config{RootCAs: roots, ServerName: "127.0.0.1"}).HandshakeContext(ctx)
	}()
	b.SetReadDeadline(time.Now().Add(ioTimeout))
	hdr := make([]byte, 5)
	if _, err := io.ReadFull(b, hdr); err != nil {
		t.Fatal(err)
	}
	rec := make([]byte, 5+int(binary.BigEndian.Uint16(hdr[3:5])))
	copy(rec, hdr)
	if _, err := io.ReadFull(b, rec[5:]); err != nil {
		t.Fatal(err)
	}
	return rec
}

// TLS clients that stall mid-handshake (silent after connecting, half a
// ClientHello, a whole ClientHello and then nothing) are closed within the
// handshake (or idle) timeout, hold no goroutine afterwards, and a good TLS
// client is served throughout.
func TestTLSStalledHandshake(t *testing.T) {
	cert, roots := testCert(t)
	hello := clientHello(t, roots)
	forEach(t, func(t *testing.T, v variant) {
		const (
			handshakeTimeout = 300 * time.Millisecond
			bound            = 3 * time.Second
		)
		srv := listen(t, v, engine.Config{
			TLS:              &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12},
			HandshakeTimeout: handshakeTimeout,
			IdleTimeout:      600 * time.Millisecond, // the reactor starts a handshake at the first byte
		})
		stalls := []struct {
			name string
			send []byte
		}{
			{"silent", nil},
			{"half a ClientHello", hello[:len(hello)/2]},
			{"a ClientHello, then nothing", hello},
		}
		n := scale(20)
		var wg sync.WaitGroup
		errs := make(chan error, n*len(stalls))
		for _, st := range stalls {
			for i := range n {
				c := mustDial(t, srv, nil)
				wg.Go(func() {
					start := time.Now()
					if len(st.send) > 0 {
						if err := c.writeRaw(st.send); err != nil {
							errs <- fmt.Errorf("%s %d: %w", st.name, i, err)
							return
						}
					}
					// Read whatever the server sends (its handshake answer)
					// until it closes.
					c.nc.SetReadDeadline(time.Now().Add(2 * bound))
					_, err := io.Copy(io.Discard, c.nc)
					el := time.Since(start)
					switch {
					case err != nil && !testnet.IsClosed(err):
						errs <- fmt.Errorf("%s %d: want the server to close, got %v after %v", st.name, i, err, el)
					case el > bound:
						errs <- fmt.Errorf("%s %d: closed after %v, want within %v", st.name, i, el, bound)
					}
				})
			}
		}
		// A good TLS client meanwhile.
		tc, err := tls.DialWithDialer(&net.Dialer{Timeout: ioTimeout}, "tcp", srv.Addr().String(),
			&tls.Config{RootCAs: roots, ServerName: "127.0.0.1"})
		if err != nil {
			t.Fatal(err)
		}
		good := newConn(tc, nil)
		for j := range 10 {
			if err := good.echo(fmt.Appendf(nil, "good %d", j)); err != nil {
				t.Fatal(err)
			}
		}
		good.close()
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Error(err)
		}
		testnet.WaitFor(t, ioTimeout, "every connection to close", func() bool { return srv.Stats().OpenConns == 0 })
	})
}
