package client

import (
	"crypto/tls"
	"fmt"
	"strconv"
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
	// HMACKey, when set, makes the client sign every request and verify
	// every answer with HMAC-SHA256 under this key. The server must be
	// configured with the same key: the frames say nothing about whether a
	// MAC follows. On a version-1 session (see Protocol) each frame carries
	// a 32-byte tag under a key derived for the session, covering the
	// frame's direction, status, sequence number, request text and payload;
	// on a version-0 session the classic 44-byte MAC covers the payload
	// only. A client with a key refuses to fall back to version 0 unless
	// AllowV0 is set.
	HMACKey []byte
	// Protocol is the protocol version to speak. The zero value,
	// [ProtocolAuto], offers version 1 and falls back to version 0 for a
	// server that speaks only that (a classic Petrel server), when allowed:
	// see [ProtocolAuto].
	Protocol Protocol
	// AllowV0 lets a client with an HMACKey fall back to version 0 under
	// [ProtocolAuto]. Without it such a client requires version 1, so that
	// nobody on the path can downgrade its session to the classic MAC, which
	// does not cover the request text or the sequence number. It changes
	// nothing for a client without a key (which falls back anyway), or
	// under [Protocol0] or [Protocol1].
	AllowV0 bool
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

	// firstSeq is the sequence number of a session's PROTOCHECK; 0 means
	// 1. A test hook (export_test.go), to reach the end of the sequence
	// numbers.
	firstSeq uint32
}

// Protocol selects the protocol version a client speaks. Its zero value is
// [ProtocolAuto].
type Protocol uint8

// The protocol choices.
const (
	// ProtocolAuto offers version 1. A server that speaks only version 0
	// answers 497 with payload 0x00; the client then dials again and speaks
	// version 0, so classic servers keep working. A client with an
	// HMACKey does so only when AllowV0 is set: otherwise [Dial] fails with
	// a *[VersionError] matching [ErrDowngrade]. A client made by [New]
	// cannot dial again: it fails with a *[VersionError] instead of falling
	// back (set Protocol0 to speak version 0 over a connection of your own).
	ProtocolAuto Protocol = iota
	// Protocol0 speaks version 0 only, the classic protocol: the MAC, if
	// any, covers the payload only. Setting it is an explicit choice, with
	// or without a key; AllowV0 is not needed. A server that requires
	// version 1 answers 497 with payload 0x01, a *[VersionError].
	Protocol0
	// Protocol1 speaks version 1 only: a server that does not speak it
	// gives a *[VersionError].
	Protocol1
)

// String returns "auto", "0" or "1".
func (p Protocol) String() string {
	switch p {
	case ProtocolAuto:
		return "auto"
	case Protocol0:
		return "0"
	case Protocol1:
		return "1"
	}
	return "Protocol(" + strconv.Itoa(int(p)) + ")"
}

// offer returns the version a client offers first under p.
func (p Protocol) offer() uint8 {
	if p == Protocol0 {
		return codec.ProtocolV0
	}
	return codec.ProtocolV1
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
	if r.Protocol > Protocol1 {
		return r, fmt.Errorf("%w: unknown protocol %v", ErrConfig, r.Protocol)
	}
	if r.firstSeq == 0 {
		r.firstSeq = 1
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
