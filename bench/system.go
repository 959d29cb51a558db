package bench

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"slices"
	"strings"
	"time"
)

// Protocol is the wire protocol a system speaks; it selects the load
// client.
type Protocol int

// The protocols.
const (
	ProtoPetrel Protocol = iota // Petrel frames (codec package)
	ProtoNetRPC                 // net/rpc with gob
	ProtoGRPC                   // gRPC with a raw-bytes codec
)

// String returns the protocol's name.
func (p Protocol) String() string {
	switch p {
	case ProtoPetrel:
		return "petrel"
	case ProtoNetRPC:
		return "net/rpc"
	case ProtoGRPC:
		return "grpc"
	}
	return fmt.Sprintf("protocol(%d)", int(p))
}

// Feature is something a scenario needs from a system.
type Feature int

// The features a scenario may need.
const (
	FeatUnix Feature = iota // listen on a Unix domain socket
	FeatHMAC                // Petrel HMAC on every frame
	FeatTLS                 // TLS
	FeatSlow                // a handler that blocks ("sleep")
	FeatV1                  // Petrel protocol version 1
)

// String returns the feature's name.
func (f Feature) String() string {
	return [...]string{"unix", "hmac", "tls", "slow handler", "protocol version 1"}[f]
}

// ServeConfig is what the server role is given.
type ServeConfig struct {
	// Addr is where to listen: "127.0.0.1:0" style for TCP, or
	// "unix:///path" for a Unix socket.
	Addr string
	// HMACKey turns on Petrel HMACs when non-nil.
	HMACKey []byte
	// TLS serves TLS when non-nil.
	TLS *tls.Config
	// Slow is how long the "sleep" handler blocks before echoing.
	Slow time.Duration
}

// Server is a running server under test.
type Server interface {
	// Addr is the address clients dial: "host:port" or "unix:///path".
	Addr() string
	// Close stops the server; it may return before every goroutine exited,
	// since the process exits right after.
	Close() error
}

// System is one server under test.
type System struct {
	// Name identifies the system in flags, tables and JSON.
	Name string
	// Doc is a one-line description for the table legend.
	Doc string
	// Protocol selects the load client.
	Protocol Protocol
	// Lacks lists the features the system does not have, with the reason;
	// scenarios needing them skip it with that note.
	Lacks map[Feature]string
	// Serve starts the server in the server role. ctx is cancelled when the
	// server should stop.
	Serve func(ctx context.Context, c ServeConfig) (Server, error)
	// Unavailable, when non-empty, says why the system cannot run at all
	// (for example, the engine is not built yet); it is skipped with that
	// note.
	Unavailable string
}

// notInScenario is why a system that a scenario's Only list leaves out
// does not run it.
const notInScenario = "not in this scenario"

// why returns why s cannot run sc, or "" when it can.
func (s System) why(sc Scenario) string {
	if len(sc.Only) > 0 && !slices.Contains(sc.Only, s.Name) {
		return notInScenario
	}
	if s.Unavailable != "" {
		return s.Unavailable
	}
	for _, f := range sc.needs() {
		if r, ok := s.Lacks[f]; ok {
			return "no " + f.String() + ": " + r
		}
	}
	return ""
}

// Systems returns the systems of the default suite, in table order: the
// Petrel engines, the floors, the peers.
func Systems() []System {
	s := engineSystems()
	return append(s,
		System{
			Name:     "floor-std",
			Doc:      "floor: minimal stdlib server for Petrel frames, goroutine per connection",
			Protocol: ProtoPetrel,
			Lacks:    map[Feature]string{FeatV1: "the floors speak version 0 only"},
			Serve:    serveFloorStd,
		},
		System{
			Name:     "floor-gnet",
			Doc:      "floor: minimal gnet v2 server for Petrel frames, inline handler",
			Protocol: ProtoPetrel,
			Lacks:    map[Feature]string{FeatTLS: "gnet has no TLS", FeatV1: "the floors speak version 0 only"},
			Serve:    serveFloorGnet,
		},
		System{
			Name:     "net-rpc",
			Doc:      "peer: net/rpc (gob), goroutine per connection",
			Protocol: ProtoNetRPC,
			Lacks:    map[Feature]string{FeatHMAC: "not a Petrel protocol feature", FeatV1: "not a Petrel protocol feature"},
			Serve:    serveNetRPC,
		},
		System{
			Name:     "grpc",
			Doc:      "peer: google.golang.org/grpc unary calls, raw-bytes codec",
			Protocol: ProtoGRPC,
			Lacks:    map[Feature]string{FeatHMAC: "not a Petrel protocol feature", FeatV1: "not a Petrel protocol feature"},
			Serve:    serveGRPC,
		},
	)
}

// SelectSystems returns the systems of all named in names (comma
// separated), in all's order; "" or "all" selects every one.
func SelectSystems(all []System, names string) ([]System, error) {
	return selectNamed(all, names, "system", func(s System) string { return s.Name })
}

// splitAddr turns "unix:///path" into ("unix", "/path") and "host:port"
// (optionally "tcp://host:port") into ("tcp", "host:port").
func splitAddr(addr string) (network, address string) {
	if p, ok := strings.CutPrefix(addr, "unix://"); ok {
		return "unix", p
	}
	if p, ok := strings.CutPrefix(addr, "tcp://"); ok {
		return "tcp", p
	}
	return "tcp", addr
}

// listen listens on addr (see splitAddr), under TLS when cfg is non-nil.
func listen(addr string, cfg *tls.Config) (net.Listener, error) {
	network, a := splitAddr(addr)
	ln, err := net.Listen(network, a)
	if err != nil {
		return nil, err
	}
	if cfg != nil {
		ln = tls.NewListener(ln, cfg)
	}
	return ln, nil
}

// lnAddr formats a listener's address the way clients dial it.
func lnAddr(ln net.Listener) string {
	a := ln.Addr()
	if a.Network() == "unix" {
		return "unix://" + a.String()
	}
	return a.String()
}
