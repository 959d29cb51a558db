package reliability_test

import (
	"bytes"
	"errors"
	"fmt"
	"hash/crc32"
	"net"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/petrel-rpc/petrel/codec"
	"github.com/petrel-rpc/petrel/engine"
	"github.com/petrel-rpc/petrel/internal/testnet"
)

// The live-server fuzz target's servers: one per engine variant, with and
// without HMAC, started once per process on first use and closed by
// TestMain after the tests.
const (
	fuzzMaxPayload = 64 << 10
	fuzzRead       = 2 * time.Second // bound on every read of an answer
)

var fuzzKey = []byte("fuzz-key")

type fuzzServer struct {
	name string
	srv  *engine.Server
	key  []byte // nil without HMAC
}

var fuzzShared struct {
	once    sync.Once
	servers []*fuzzServer
	err     error
	execs   atomic.Int64
}

func fuzzServers() ([]*fuzzServer, error) {
	fuzzShared.once.Do(func() {
		for _, v := range variants {
			for _, key := range [][]byte{nil, fuzzKey} {
				srv, err := engine.Listen(engine.Config{
					Addr:          "127.0.0.1:0",
					Engine:        v.kind,
					Inline:        v.inline,
					EventLoops:    2,
					MaxPayload:    fuzzMaxPayload,
					ReadTimeout:   250 * time.Millisecond,
					IdleTimeout:   5 * time.Second,
					HMACKey:       key,
					Logger:        testnet.QuietLogger(),
					IgnoreSignals: true,
					Handlers:      baseHandlers(variant{inline: true}), // echo, fail, panic: none blocks
				})
				if err != nil {
					fuzzShared.err = err
					return
				}
				name := v.name
				if key != nil {
					name += "+hmac"
				}
				fuzzShared.servers = append(fuzzShared.servers, &fuzzServer{name: name, srv: srv, key: key})
			}
		}
	})
	return fuzzShared.servers, fuzzShared.err
}

// closeFuzzServers closes the shared servers, if they were started.
func closeFuzzServers() {
	for _, s := range fuzzShared.servers {
		s.srv.Close()
	}
}

// expected is the server's answer to one request as the oracle predicts
// it. payload is checked only when check is set (library reasons are
// not part of the contract).
type expected struct {
	status  codec.Status
	seq     uint32
	request string
	payload []byte
	check   bool
}

// predict decodes the stream as the server must and returns the answers
// it owes, in order, whether the last of them closes the connection, and
// whether the stream negotiated protocol version 1 (then only the answers
// up to the negotiation are predicted).
func predict(data []byte, key []byte) (want []expected, closes, v1 bool) {
	opts := codec.Options{MaxPayload: fuzzMaxPayload, MAC: key != nil}
	var mac *codec.MAC
	if key != nil {
		mac = codec.NewMAC(key)
	}
	begun := false // a frame has been served: the session is version 0
	for off := 0; ; {
		rest := data[off:]
		f, n, _, err := codec.Parse(rest, opts)
		if err != nil {
			// Refused once the header and the request text are here,
			// echoing the request text.
			h, _ := codec.ParseHeader(rest)
			end := codec.HeaderLen + int(h.RequestLen)
			if len(rest) < end {
				return want, false, false
			}
			var le *codec.LimitError
			errors.As(err, &le)
			return append(want, expected{status: codec.StatusPayloadTooLarge, seq: h.Seq,
				request: string(rest[codec.HeaderLen:end]), payload: []byte(le.Reason()), check: true}), true, false
		}
		if n == 0 {
			return want, false, false
		}
		off += n
		e := expected{seq: f.Seq, request: string(f.Request)}
		first := !begun
		begun = true
		switch {
		case mac != nil && mac.Verify(f.Payload, f.MAC) != nil:
			e.status = codec.StatusBadMAC
		case len(f.Request) == 0:
			e.status = codec.StatusEmptyRequest
		case string(f.Request) == codec.ProtoCheck:
			v, _, perr := codec.ParseProtoCheck(f.Payload)
			switch {
			case perr == nil && v == codec.ProtocolV0:
				e.status, e.payload, e.check = codec.StatusOK, []byte{0}, true
			case !first && perr == nil && v == codec.ProtocolV1:
				e.status = codec.StatusReadError // no renegotiation
			case perr == nil && v == codec.ProtocolV1:
				e.status = codec.StatusOK
				return append(want, e), false, true
			default:
				// A version not spoken: 497 with the highest one.
				e.status, e.payload, e.check = codec.StatusVersionMismatch, []byte{codec.ProtocolV1}, true
			}
		case string(f.Request) == "echo":
			e.status, e.payload, e.check = codec.StatusOK, bytes.Clone(f.Payload), true
		case string(f.Request) == "fail", string(f.Request) == "panic":
			e.status = codec.StatusHandlerError
		default:
			e.status = codec.StatusNoHandler
		}
		want = append(want, e)
		if e.status.ClosesConn() {
			return want, true, false
		}
	}
}

// FuzzServerStream writes arbitrary bytes into live server connections,
// on every engine variant with and without HMAC, and checks that:
//   - every answer is a whole, valid frame (MAC included) and is exactly
//     the answer the protocol owes, in order;
//   - no connection ends inside a frame;
//   - a connection that must be closed (402, 497, 502) is;
//   - a fresh, well-behaved connection still gets a correct echo;
//   - the process's heap and goroutines stay bounded.
func FuzzServerStream(f *testing.F) {
	mac := codec.NewMAC(fuzzKey)
	enc := func(m *codec.MAC, frames ...codec.Frame) []byte {
		var b []byte
		for _, fr := range frames {
			b, _ = codec.AppendFrame(b, fr, m)
		}
		return b
	}
	echo := codec.Frame{Seq: 1, Request: []byte("echo"), Payload: []byte("hello")}
	check := codec.Frame{Seq: 1, Request: []byte(codec.ProtoCheck), Payload: []byte{0}}
	var big [codec.HeaderLen]byte
	codec.PutHeader(big[:], 0, 7, 4, fuzzMaxPayload+1)
	for _, m := range []*codec.MAC{nil, mac} {
		f.Add(enc(m, echo), uint16(0))
		f.Add(enc(m, check, echo, codec.Frame{Seq: 2, Request: []byte("echo"), Payload: bytes.Repeat([]byte("x"), 3000)}), uint16(5))
		f.Add(enc(m, echo, codec.Frame{Seq: 2, Request: []byte("nope")}, codec.Frame{Seq: 3}, codec.Frame{Seq: 4, Request: []byte("fail")},
			codec.Frame{Seq: 5, Request: []byte("panic")}, codec.Frame{Status: 500, Seq: 6, Request: []byte("echo"), Payload: []byte("status ignored")}), uint16(30))
		f.Add(enc(m, codec.Frame{Seq: 9, Request: []byte(codec.ProtoCheck), Payload: []byte{1}}, echo), uint16(3))
		f.Add(append(enc(m, echo), big[:]...), uint16(12))
		f.Add(enc(m, echo)[:14], uint16(7)) // partial frame: the server waits, then times out
	}
	f.Add(big[:], uint16(4))
	f.Add([]byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"), uint16(3))
	f.Add(bytes.Repeat([]byte{0xff}, 64), uint16(11))
	f.Add([]byte{}, uint16(0))

	f.Fuzz(func(t *testing.T, data []byte, split uint16) {
		servers, err := fuzzServers()
		if err != nil {
			t.Fatal(err)
		}
		cut := int(split) % (len(data) + 1)
		for _, s := range servers {
			if err := fuzzOne(s, data, cut); err != nil {
				t.Fatalf("%s: %v", s.name, err)
			}
			p := fmt.Appendf(nil, "canary %08x", crc32.ChecksumIEEE(data))
			if err := checkEcho(s.srv, s.key, p); err != nil {
				t.Fatalf("%s: a well-behaved connection after this input: %v", s.name, err)
			}
		}
		if fuzzShared.execs.Add(1)%64 == 0 {
			if h := heapInUse(); h > 512<<20 {
				t.Fatalf("heap in use %d MiB", h>>20)
			}
			if g := runtime.NumGoroutine(); g > 2000 {
				t.Fatalf("%d goroutines", g)
			}
		}
	})
}

// fuzzOne writes data (in two writes, split at cut) on a fresh connection
// to s while reading the answers, and checks them against the oracle.
func fuzzOne(s *fuzzServer, data []byte, cut int) error {
	want, closes, v1 := predict(data, s.key)
	c, err := dial(s.srv, s.key)
	if err != nil {
		return fmt.Errorf("dial: %w", err)
	}
	c.opts.MaxPayload = fuzzMaxPayload + 1<<10 // answers are never bigger
	defer c.abort()
	wrote := make(chan struct{})
	go func() {
		// Write errors are expected once the server closes; the answers
		// tell whether it closed too early.
		defer close(wrote)
		c.nc.SetWriteDeadline(time.Now().Add(fuzzRead))
		if _, err := c.nc.Write(data[:cut]); err == nil {
			c.nc.Write(data[cut:])
		}
	}()
	defer func() { c.nc.SetDeadline(time.Unix(1, 0)); <-wrote }()
	for i, w := range want {
		f, err := c.recv(fuzzRead)
		if err != nil {
			if errors.Is(err, errTorn) || !testnet.IsClosed(err) || len(data) < 64<<10 {
				return fmt.Errorf("answer %d of %d (status %d seq %d): %w", i+1, len(want), w.status, w.seq, err)
			}
			// A stream larger than the reactor's pipelining backlog may be
			// cut off between frames; anything else is a lost answer.
			return nil
		}
		if f.Status != w.status || f.Seq != w.seq || string(f.Request) != w.request ||
			(w.check && !bytes.Equal(f.Payload, w.payload)) {
			return fmt.Errorf("answer %d: status %d seq %d request %q payload %.40q; want status %d seq %d request %q payload %.40q",
				i+1, f.Status, f.Seq, f.Request, f.Payload, w.status, w.seq, w.request, w.payload)
		}
	}
	if v1 {
		return nil // what follows a version-1 negotiation is not predicted
	}
	if closes {
		if err := c.closedErr(fuzzRead); err != nil {
			return fmt.Errorf("after status %d: %w", want[len(want)-1].status, err)
		}
		return nil
	}
	// Nothing more is owed: anything that arrives now must not be a frame.
	f, err := c.recv(time.Millisecond)
	switch {
	case err == nil:
		return fmt.Errorf("unexpected answer: status %d seq %d request %q", f.Status, f.Seq, f.Request)
	case errors.Is(err, errTorn):
		return err
	case testnet.IsTimeout(err), testnet.IsClosed(err), errors.Is(err, net.ErrClosed):
		return nil
	}
	return err
}
