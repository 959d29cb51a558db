// Command tls shows a Petrel server that authenticates its clients with TLS
// client certificates. It makes a throwaway certificate authority and, signed
// by it, a server certificate for 127.0.0.1 and a client certificate for
// "alice", all in memory; then it runs a server that requires and verifies
// client certificates, a client with alice's certificate, whom the server
// greets by the certificate's common name, and a client without a
// certificate, which the server refuses. Last, authorisation by
// certificate: the "secret" handler admits only alice, so bob, whose
// certificate the same CA signed, gets status 1403.
//
//	go run ./examples/tls
//
// The program exits 0 once both clients behaved as expected.
package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"time"

	"github.com/petrel-rpc/petrel/client"
	"github.com/petrel-rpc/petrel/codec"
	"github.com/petrel-rpc/petrel/engine"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "tls:", err)
		os.Exit(1)
	}
}

// hello greets the client by the common name of its certificate. With
// tls.RequireAndVerifyClientCert, a request only reaches a handler on a
// connection whose client presented a certificate the CA signed.
func hello(_ context.Context, req *engine.Request) (uint16, []byte, error) {
	st := req.Conn.TLS
	if st == nil || len(st.PeerCertificates) == 0 {
		return 1401, []byte("no client certificate"), nil
	}
	return 200, []byte("hello, " + st.PeerCertificates[0].Subject.CommonName), nil
}

// requireCN authorises by certificate: only clients whose verified
// certificate names one of names reach next; others get 1403, an
// application status (codes above 1024 are the application's).
func requireCN(next engine.Handler, names ...string) engine.Handler {
	allowed := map[string]bool{}
	for _, n := range names {
		allowed[n] = true
	}
	return func(ctx context.Context, req *engine.Request) (uint16, []byte, error) {
		st := req.Conn.TLS
		if st == nil || len(st.VerifiedChains) == 0 || !allowed[st.VerifiedChains[0][0].Subject.CommonName] {
			return 1403, []byte("not authorised"), nil
		}
		return next(ctx, req)
	}
}

func secret(context.Context, *engine.Request) (uint16, []byte, error) {
	return 200, []byte("the secret is 42"), nil
}

func run() error {
	ca, err := newCA()
	if err != nil {
		return err
	}
	serverCert, err := ca.issue("petrel example server", true)
	if err != nil {
		return err
	}
	clientCert, err := ca.issue("alice", false)
	if err != nil {
		return err
	}
	bobCert, err := ca.issue("bob", false)
	if err != nil {
		return err
	}

	srv, err := engine.Listen(engine.Config{
		Addr: "127.0.0.1:0",
		TLS: &tls.Config{
			Certificates: []tls.Certificate{serverCert},
			ClientCAs:    ca.pool,
			ClientAuth:   tls.RequireAndVerifyClientCert,
			MinVersion:   tls.VersionTLS13,
		},
		Handlers: map[string]engine.Handler{
			"hello":  hello,
			"secret": requireCN(secret, "alice"),
		},
	})
	if err != nil {
		return err
	}
	defer srv.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	// A client with a certificate: the server greets it by name.
	alice, err := client.Dial(ctx, client.Config{
		Addr: srv.AddrString(),
		TLS: &tls.Config{
			RootCAs:      ca.pool,
			Certificates: []tls.Certificate{clientCert},
			MinVersion:   tls.VersionTLS13,
		},
	})
	if err != nil {
		return fmt.Errorf("client with a certificate: %w", err)
	}
	resp, err := alice.Call(ctx, "hello", nil)
	if err != nil {
		alice.Close()
		return fmt.Errorf("client with a certificate: %w", err)
	}
	fmt.Printf("client with a certificate: %s\n", resp.Payload)
	aliceSecret, err := alice.Call(ctx, "secret", nil)
	alice.Close()
	if err != nil {
		return fmt.Errorf("alice on secret: %w", err)
	}

	// A client without one: the server aborts the handshake. Under TLS 1.3
	// the client learns it on its first read, which is Dial's protocol
	// check, so Dial fails.
	anon, err := client.Dial(ctx, client.Config{
		Addr: srv.AddrString(),
		TLS:  &tls.Config{RootCAs: ca.pool, MinVersion: tls.VersionTLS13},
	})
	if err == nil {
		anon.Close()
		return errors.New("client without a certificate: the server accepted it")
	}
	fmt.Printf("client without a certificate: refused: %v\n", err)

	// Authorisation by certificate: both are authenticated, only alice is
	// authorised.
	fmt.Printf("alice on secret: %s\n", aliceSecret.Payload)
	bob, err := client.Dial(ctx, client.Config{
		Addr: srv.AddrString(),
		TLS: &tls.Config{
			RootCAs:      ca.pool,
			Certificates: []tls.Certificate{bobCert},
			MinVersion:   tls.VersionTLS13,
		},
	})
	if err != nil {
		return fmt.Errorf("bob: %w", err)
	}
	_, err = bob.Call(ctx, "secret", nil)
	bob.Close()
	var se *codec.StatusError
	if !errors.As(err, &se) || se.Status != 1403 {
		return fmt.Errorf("bob on secret: got %v, want status 1403", err)
	}
	fmt.Printf("bob on secret: status %d: %s\n", int(se.Status), se.Reason)

	return srv.Shutdown(ctx)
}

// ca is a throwaway certificate authority.
type ca struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pool *x509.CertPool // holds cert, for RootCAs and ClientCAs
}

func newCA() (*ca, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "petrel example CA"},
		NotBefore:             time.Now().Add(-time.Minute),
		NotAfter:              time.Now().Add(time.Hour),
		KeyUsage:              x509.KeyUsageCertSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, err
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return &ca{cert: cert, key: key, pool: pool}, nil
}

// issue makes a key and a certificate signed by the CA: for the server at
// 127.0.0.1, or for a client named cn.
func (a *ca) issue(cn string, server bool) (tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
	if err != nil {
		return tls.Certificate{}, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: cn},
		NotBefore:    time.Now().Add(-time.Minute),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	if server {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
		tmpl.IPAddresses = []net.IP{net.IPv4(127, 0, 0, 1)}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, a.cert, &key.PublicKey, a.key)
	if err != nil {
		return tls.Certificate{}, err
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, nil
}
