package client_test

// Protocol version 1 (PROTOCOL.md, "Version 1") against the fake server:
// negotiation and fallback, session tags, the sequence rule, 503 and 504.

import (
	"context"
	"errors"
	"math"
	"net"
	"strings"
	"testing"

	"github.com/petrel-rpc/petrel/client"
	"github.com/petrel-rpc/petrel/codec"
)

var testKey = []byte("sekrit")

// keyName names a key in subtest names.
func keyName(key []byte) string {
	if key == nil {
		return "unkeyed"
	}
	return "keyed"
}

func wantVersionError(t testing.TB, err error, offered, server uint8) *client.VersionError {
	t.Helper()
	var ve *client.VersionError
	if !errors.As(err, &ve) || ve.Offered != offered || ve.Server != server {
		t.Fatalf("%v (%T), want a VersionError offered %d, server %d", err, err, offered, server)
	}
	if !errors.Is(err, client.ErrProtocolCheck) {
		t.Fatalf("%v does not match ErrProtocolCheck", err)
	}
	wantStatus(t, err, codec.StatusVersionMismatch)
	return ve
}

func TestNegotiation(t *testing.T) {
	forTransports(t, func(t *testing.T, start func(fakeConfig) (*fakeServer, client.Config)) {
		for _, key := range [][]byte{nil, testKey} {
			for _, tc := range []struct {
				proto client.Protocol
				want  uint8
			}{{client.ProtocolAuto, 1}, {client.Protocol1, 1}, {client.Protocol0, 0}} {
				s, cfg := start(fakeConfig{Key: key})
				cfg.Protocol = tc.proto
				c := mustDial(t, cfg)
				if c.Version() != tc.want || s.Accepted() != 1 {
					t.Fatalf("%s, %v: version %d after %d connections, want %d after 1", keyName(key), tc.proto, c.Version(), s.Accepted(), tc.want)
				}
				for i := range 3 {
					resp, err := c.Call(testCtx(t), "echo", []byte("v1?"))
					if err != nil || string(resp.Payload) != "v1?" || resp.Seq != uint32(2+i) {
						t.Fatalf("%s, %v: %q seq %d, %v", keyName(key), tc.proto, resp.Payload, resp.Seq, err)
					}
				}
			}
		}
	})
}

// A classic server (version 0 only) answers a version-1 PROTOCHECK 497
// with payload 0x00.
func TestFallbackToV0(t *testing.T) {
	forTransports(t, func(t *testing.T, start func(fakeConfig) (*fakeServer, client.Config)) {
		// Unkeyed: redial and speak version 0.
		s, cfg := start(fakeConfig{Proto: "v0"})
		c := mustDial(t, cfg)
		if c.Version() != 0 || s.Accepted() != 2 {
			t.Fatalf("version %d after %d connections, want 0 after 2", c.Version(), s.Accepted())
		}
		wantOpen(t, c)

		// Keyed: refuse the downgrade, on the first connection.
		s, cfg = start(fakeConfig{Proto: "v0", Key: testKey})
		c, err := client.Dial(testCtx(t), cfg)
		ve := wantVersionError(t, err, 1, 0)
		if c != nil || !ve.Downgrade || !errors.Is(err, client.ErrDowngrade) || s.Accepted() != 1 {
			t.Fatalf("keyed: %v after %d connections, want ErrDowngrade after 1", err, s.Accepted())
		}
		if !strings.Contains(err.Error(), "AllowV0") {
			t.Fatalf("the error does not say what to do: %v", err)
		}
		t.Logf("%v", err)

		// Keyed with AllowV0: version 0, MAC and all.
		cfg.AllowV0 = true
		c = mustDial(t, cfg)
		if c.Version() != 0 || s.Accepted() != 3 {
			t.Fatalf("AllowV0: version %d after %d connections", c.Version(), s.Accepted())
		}
		wantOpen(t, c)
		if _, err := c.Call(testCtx(t), "tamper", []byte("x")); !errors.Is(err, codec.ErrBadMAC) {
			t.Fatalf("tampered version-0 answer: %v", err)
		}

		// Keyed with Protocol0: an explicit choice, no AllowV0 needed.
		cfg.AllowV0, cfg.Protocol = false, client.Protocol0
		c = mustDial(t, cfg)
		if c.Version() != 0 {
			t.Fatalf("Protocol0: version %d", c.Version())
		}
		wantOpen(t, c)

		// Protocol1 does not fall back, keyed or not.
		for _, key := range [][]byte{nil, testKey} {
			s, cfg := start(fakeConfig{Proto: "v0", Key: key})
			cfg.Protocol, cfg.AllowV0 = client.Protocol1, true
			_, err := client.Dial(testCtx(t), cfg)
			if ve := wantVersionError(t, err, 1, 0); ve.Downgrade || s.Accepted() != 1 {
				t.Fatalf("Protocol1, %s: %v after %d connections", keyName(key), err, s.Accepted())
			}
		}
	})
}

func TestServerRequiresV1(t *testing.T) {
	for _, key := range [][]byte{nil, testKey} {
		s := startFake(t, fakeConfig{Proto: "v1only", Key: key})
		cfg := client.Config{Addr: s.Addr, HMACKey: key}
		if c := mustDial(t, cfg); c.Version() != 1 {
			t.Fatalf("%s: version %d", keyName(key), c.Version())
		}
		cfg.Protocol = client.Protocol0
		_, err := client.Dial(testCtx(t), cfg)
		wantVersionError(t, err, 0, 1)
		if !strings.Contains(err.Error(), "requires protocol version 1") {
			t.Fatalf("%s: %v", keyName(key), err)
		}
		t.Logf("%v", err)
	}
}

// New has its caller's connection only: it cannot redial to fall back.
func TestNewDoesNotFallBack(t *testing.T) {
	s := startFake(t, fakeConfig{Proto: "v0"})
	conn, err := net.Dial("tcp", s.Addr)
	if err != nil {
		t.Fatal(err)
	}
	_, err = client.New(testCtx(t), conn, client.Config{})
	if ve := wantVersionError(t, err, 1, 0); ve.Downgrade || !strings.Contains(err.Error(), "Protocol0") {
		t.Fatalf("New, auto: %v", err)
	}
	if conn, err = net.Dial("tcp", s.Addr); err != nil {
		t.Fatal(err)
	}
	c, err := client.New(testCtx(t), conn, client.Config{Protocol: client.Protocol0})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	wantOpen(t, c)
}

func TestBadAnswerTag(t *testing.T) {
	forTransports(t, func(t *testing.T, start func(fakeConfig) (*fakeServer, client.Config)) {
		_, cfg := start(fakeConfig{Key: testKey})
		for _, req := range []string{"tamper", "badmac", "reflect"} {
			c := mustDial(t, cfg)
			if c.Version() != 1 {
				t.Fatalf("version %d", c.Version())
			}
			_, err := c.Call(testCtx(t), req, []byte("payload"))
			if !errors.Is(err, codec.ErrBadMAC) {
				t.Fatalf("%s: %v, want ErrBadMAC", req, err)
			}
			wantClosed(t, c)
			if !errors.Is(c.Err(), codec.ErrBadMAC) {
				t.Fatalf("%s: Err() = %v, want it to carry ErrBadMAC", req, c.Err())
			}
		}
	})
}

func TestBadAnswerSeqAndRequest(t *testing.T) {
	for _, key := range [][]byte{nil, testKey} {
		s := startFake(t, fakeConfig{Key: key})
		for _, proto := range []client.Protocol{client.Protocol1, client.Protocol0} {
			cfg := client.Config{Addr: s.Addr, HMACKey: key, Protocol: proto}
			c := mustDial(t, cfg)
			_, err := c.Call(testCtx(t), "badseq", nil)
			if !errors.Is(err, client.ErrBadAnswer) || !strings.Contains(err.Error(), "sequence number") {
				t.Fatalf("%s, version %v: wrong seq: %v, want ErrBadAnswer", keyName(key), proto, err)
			}
			wantClosed(t, c)

			// The request text is checked on version 1 only.
			c = mustDial(t, cfg)
			resp, err := c.Call(testCtx(t), "badreq", nil)
			if proto == client.Protocol0 {
				if err != nil || resp.Request != "other" {
					t.Fatalf("%s, version 0: %v, %q", keyName(key), err, resp.Request)
				}
				continue
			}
			if !errors.Is(err, client.ErrBadAnswer) || !strings.Contains(err.Error(), `"other"`) {
				t.Fatalf("%s: wrong request text: %v, want ErrBadAnswer", keyName(key), err)
			}
			wantClosed(t, c)
		}
	}
}

// The fake refuses any request breaking the sequence rule, so a long run
// of calls, concurrent ones among them, shows the client keeps it.
func TestSeqRule(t *testing.T) {
	for _, key := range [][]byte{nil, testKey} {
		s := startFake(t, fakeConfig{Key: key})
		const first = 1000
		c := mustDial(t, client.WithFirstSeq(client.Config{Addr: s.Addr, HMACKey: key}, first))
		for i := range 50 {
			resp, err := c.Call(testCtx(t), "echo", []byte("x"))
			if err != nil || resp.Seq != first+1+uint32(i) {
				t.Fatalf("%s: call %d: seq %d, %v", keyName(key), i, resp.Seq, err)
			}
		}
	}
}

func TestSeqCeiling(t *testing.T) {
	for _, key := range [][]byte{nil, testKey} {
		s := startFake(t, fakeConfig{Key: key})
		// The PROTOCHECK takes 2^32-3: two more calls fit.
		cfg := client.WithFirstSeq(client.Config{Addr: s.Addr, HMACKey: key}, math.MaxUint32-2)
		c := mustDial(t, cfg)
		for _, want := range []uint32{math.MaxUint32 - 1, math.MaxUint32} {
			resp, err := c.Call(testCtx(t), "echo", []byte("x"))
			if err != nil || resp.Seq != want {
				t.Fatalf("%s: seq %d, %v; want %d", keyName(key), resp.Seq, err, want)
			}
		}
		_, err := c.Call(testCtx(t), "echo", []byte("x"))
		if !errors.Is(err, client.ErrSeqExhausted) {
			t.Fatalf("%s: after seq 2^32-1: %v, want ErrSeqExhausted", keyName(key), err)
		}
		if _, ok := errors.AsType[*codec.StatusError](err); ok {
			t.Fatalf("%s: the server was asked: %v", keyName(key), err)
		}
		wantClosed(t, c)
		t.Logf("%v", err)

		// A version-0 session wraps, as the classic protocol does.
		c = mustDial(t, client.WithFirstSeq(client.Config{Addr: s.Addr, HMACKey: key, Protocol: client.Protocol0}, math.MaxUint32))
		resp, err := c.Call(testCtx(t), "echo", nil)
		if err != nil || resp.Seq != 0 {
			t.Fatalf("%s, version 0: seq %d, %v; want 0", keyName(key), resp.Seq, err)
		}
	}
}

// A pool replaces a connection whose sequence numbers are used up, and the
// call goes out on the new one.
func TestPoolSeqCeiling(t *testing.T) {
	s := startFake(t, fakeConfig{Key: testKey})
	p, err := client.NewPool(client.PoolConfig{
		Config: client.WithFirstSeq(client.Config{Addr: s.Addr, HMACKey: testKey}, math.MaxUint32-1),
		Size:   1,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	if _, ok := p.Version(); ok {
		t.Fatal("a version before any dial")
	}
	for i := range 5 {
		resp, err := p.Call(testCtx(t), "echo", []byte("x"))
		if err != nil || resp.Seq != math.MaxUint32 {
			t.Fatalf("call %d: seq %d, %v", i, resp.Seq, err)
		}
	}
	if s.Accepted() != 5 {
		t.Fatalf("%d connections, want 5", s.Accepted())
	}
	if v, ok := p.Version(); v != 1 || !ok {
		t.Fatalf("Version() = %d, %v", v, ok)
	}
}

func TestPoolVersion(t *testing.T) {
	s := startFake(t, fakeConfig{Proto: "v0"})
	p, err := client.NewPool(client.PoolConfig{Config: client.Config{Addr: s.Addr}, Size: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	if _, err := p.Call(testCtx(t), "echo", nil); err != nil {
		t.Fatal(err)
	}
	if v, ok := p.Version(); v != 0 || !ok {
		t.Fatalf("Version() = %d, %v; want 0, true", v, ok)
	}
	// A keyed pool refuses the downgrade.
	s = startFake(t, fakeConfig{Proto: "v0", Key: testKey})
	p2, err := client.NewPool(client.PoolConfig{Config: client.Config{Addr: s.Addr, HMACKey: testKey}, Size: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer p2.Close()
	if _, err := p2.Call(testCtx(t), "echo", nil); !errors.Is(err, client.ErrDowngrade) {
		t.Fatalf("keyed pool: %v, want ErrDowngrade", err)
	}
}

// 503 and 504 are version-1 statuses; a version-0 session gets 500.
func TestBusyAndHandlerTimeout(t *testing.T) {
	forTransports(t, func(t *testing.T, start func(fakeConfig) (*fakeServer, client.Config)) {
		for _, key := range [][]byte{nil, testKey} {
			_, cfg := start(fakeConfig{Key: key})
			for _, tc := range []struct {
				proto   client.Protocol
				req     string
				status  codec.Status
				reason  string
				success bool
			}{
				{client.ProtocolAuto, "busy", codec.StatusBusy, "server busy", false},
				{client.ProtocolAuto, "slow", codec.StatusHandlerTimeout, "handler timeout", false},
				{client.Protocol0, "busy", codec.StatusHandlerError, "server busy", false},
				{client.Protocol0, "slow", codec.StatusHandlerError, "handler timeout", false},
			} {
				cfg.Protocol = tc.proto
				c := mustDial(t, cfg)
				resp, err := c.Call(testCtx(t), tc.req, nil)
				se := wantStatus(t, err, tc.status)
				if se.Reason != tc.reason || se.Request != tc.req || resp.Status != tc.status {
					t.Fatalf("%s, %v, %s: %+v, %+v", keyName(key), tc.proto, tc.req, se, resp)
				}
				wantOpen(t, c) // neither closes the connection
			}
		}
	})
}

func TestProtocolConfig(t *testing.T) {
	s := startFake(t, fakeConfig{})
	if _, err := client.Dial(testCtx(t), client.Config{Addr: s.Addr, Protocol: 3}); !errors.Is(err, client.ErrConfig) {
		t.Fatalf("Protocol 3: %v, want ErrConfig", err)
	}
	if _, err := client.NewPool(client.PoolConfig{Config: client.Config{Addr: s.Addr, Protocol: 3}}); !errors.Is(err, client.ErrConfig) {
		t.Fatalf("pool, Protocol 3: %v, want ErrConfig", err)
	}
	for p, want := range map[client.Protocol]string{client.ProtocolAuto: "auto", client.Protocol0: "0", client.Protocol1: "1", 7: "Protocol(7)"} {
		if p.String() != want {
			t.Errorf("%d.String() = %q, want %q", p, p.String(), want)
		}
	}
	// The 17-byte PROTOCHECK goes through a payload limit below it.
	c := mustDial(t, client.Config{Addr: s.Addr, MaxPayload: 4})
	if c.Version() != 1 {
		t.Fatalf("MaxPayload 4: version %d", c.Version())
	}
	if _, err := c.Call(context.Background(), "echo", make([]byte, 5)); !errors.Is(err, codec.ErrPayloadTooLarge) {
		t.Fatalf("MaxPayload 4, 5 bytes: %v", err)
	}
}
