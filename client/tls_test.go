package client_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// testPKI is a throwaway certificate authority with a server certificate
// for 127.0.0.1 and "petrel.test" and a client certificate.
type testPKI struct {
	Pool   *x509.CertPool
	Server tls.Certificate
	Client tls.Certificate
	// PEM files, for the command: CA, client certificate and key.
	CAFile, CertFile, KeyFile string
}

func newPKI(t testing.TB) *testPKI {
	t.Helper()
	caKey := mustKey(t)
	now := time.Now()
	caTmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "petrel test CA"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	p := &testPKI{Pool: x509.NewCertPool()}
	p.Pool.AddCert(ca)
	leaf := func(serial int64, usage x509.ExtKeyUsage, server bool) (tls.Certificate, []byte, []byte) {
		k := mustKey(t)
		tmpl := &x509.Certificate{
			SerialNumber: big.NewInt(serial),
			Subject:      pkix.Name{CommonName: "petrel test leaf"},
			NotBefore:    now.Add(-time.Hour),
			NotAfter:     now.Add(time.Hour),
			KeyUsage:     x509.KeyUsageDigitalSignature,
			ExtKeyUsage:  []x509.ExtKeyUsage{usage},
		}
		if server {
			tmpl.DNSNames = []string{"petrel.test"}
			tmpl.IPAddresses = []net.IP{net.IPv4(127, 0, 0, 1)}
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &k.PublicKey, caKey)
		if err != nil {
			t.Fatal(err)
		}
		kder, _ := x509.MarshalECPrivateKey(k)
		certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
		keyPEM := pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder})
		c, err := tls.X509KeyPair(certPEM, keyPEM)
		if err != nil {
			t.Fatal(err)
		}
		return c, certPEM, keyPEM
	}
	p.Server, _, _ = leaf(2, x509.ExtKeyUsageServerAuth, true)
	var certPEM, keyPEM []byte
	p.Client, certPEM, keyPEM = leaf(3, x509.ExtKeyUsageClientAuth, false)

	dir := t.TempDir()
	p.CAFile = filepath.Join(dir, "ca.pem")
	p.CertFile = filepath.Join(dir, "client.pem")
	p.KeyFile = filepath.Join(dir, "client.key")
	for f, b := range map[string][]byte{
		p.CAFile:   pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}),
		p.CertFile: certPEM,
		p.KeyFile:  keyPEM,
	} {
		if err := os.WriteFile(f, b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return p
}

func mustKey(t testing.TB) *ecdsa.PrivateKey {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// ServerTLS requires and verifies client certificates.
func (p *testPKI) ServerTLS() *tls.Config {
	return &tls.Config{
		Certificates: []tls.Certificate{p.Server},
		ClientCAs:    p.Pool,
		ClientAuth:   tls.RequireAndVerifyClientCert,
	}
}

// ClientTLS trusts the CA and presents the client certificate.
func (p *testPKI) ClientTLS() *tls.Config {
	return &tls.Config{
		RootCAs:      p.Pool,
		Certificates: []tls.Certificate{p.Client},
		ServerName:   "petrel.test",
	}
}
