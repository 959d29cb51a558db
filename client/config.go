package client

import (
	"crypto/tls"
	"fmt"
	"time"

	"github.com/petrel-rpc/petrel/codec"
	"github.com/petrel-rpc/petrel/internal/netaddr"
)

// Config configures a [Client]. The zero value of every field but Addr is
// valid and means the default stated on it. [Dial] copies the Config: later
// changes to it, or to the slices and TLS configuration it points to, have
// no effect.
type Config struct {
	// Addr is the server's address, in the forms a server listens on:
	// "host:port", "tcp://host:port" or "unix:///path/to.sock".
	Addr string
	// TLS, when set, runs the connection over TLS with this configuration:
	// RootCAs for the server's certificate authority, Certificates for a
	// client certificate. An empty ServerName is taken from Addr's host; over
	// a Unix socket set it explicitly.
	TLS *tls.Config
	// HMACKey, when set, makes the client sign every request payload and
	// verify the MAC of every answer with HMAC-SHA256 under this key. The
	// server must be configured with the same key: the frames say nothing
	// about whether a MAC follows. The MAC covers the payload only, not the
	// request text, status or sequence number.
	HMACKey []byte
	// MaxPayload is the payload limit in bytes, applied to answers (an
	// answer declaring more is refused from its header alone and the client
	// closed) and to requests (a larger payload is refused before anything
	// is sent). 0 means 4 MiB. The server's own limit is unknown to the
	// client: a request within this limit but over the server's is answered
	// 402 and the connection closed.
	MaxPayload uint32
	// DialTimeout bounds [Dial] as a whole: connecting, the TLS handshake
	// and the protocol check. 0 means no bound beyond the context's.
	DialTimeout time.Duration
	// CallTimeout bounds every call, from sending the request to reading
	// the whole answer. 0 means no bound beyond the context's.
	CallTimeout time.Duration
}

// config is a Config with defaults applied and the address split.
type config struct {
	Config
	network string // "tcp" or "unix"
	address string // host:port or socket path
}

func (c Config) resolve(needAddr bool) (config, error) {
	r := config{Config: c}
	if needAddr {
		n, a, err := splitAddr(c.Addr)
		if err != nil {
			return r, err
		}
		r.network, r.address = n, a
	}
	if r.MaxPayload == 0 {
		r.MaxPayload = codec.DefaultMaxPayload
	}
	if r.DialTimeout < 0 || r.CallTimeout < 0 {
		return r, fmt.Errorf("%w: negative timeout", ErrConfig)
	}
	if r.TLS != nil {
		r.TLS = r.TLS.Clone()
	}
	if r.HMACKey != nil {
		r.HMACKey = append([]byte(nil), r.HMACKey...)
	}
	return r, nil
}

// splitAddr turns "host:port", "tcp://host:port" or "unix:///path" into a
// network and an address for net.Dial.
func splitAddr(addr string) (network, address string, err error) {
	network, address, err = netaddr.Split(addr)
	if err != nil {
		return "", "", fmt.Errorf("%w: %w", ErrConfig, err)
	}
	return network, address, nil
}
