package client_test

import (
	"bufio"
	"crypto/tls"
	"encoding/binary"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"testing"

	"github.com/petrel-rpc/petrel/codec"
)

// fakeConfig configures a fakeServer: a small Petrel server written from
// the codec alone, goroutine per connection, that can also misbehave.
type fakeConfig struct {
	Proto      string // "" answers PROTOCHECK 200; "none" answers 400; "v1" answers 497
	Key        []byte // HMAC key; nil for none
	MaxPayload uint32 // request payload limit; 0 means 4 MiB
	TLS        *tls.Config
	Unix       bool // listen on a Unix socket instead of 127.0.0.1:0
}

// fakeServer answers these requests:
//
//	echo     200 and the payload
//	fail     500 "boom" (connection stays open)
//	code     the status written in decimal in the payload, reason "code N"
//	big      200 and as many bytes as the payload says in decimal
//	hang     never answers (until the server closes)
//	cut      half an answer, then closes the connection
//	huge     a header declaring a 2 GiB payload, then nothing
//	badseq   an answer with the wrong sequence number
//	badmac   an answer with a wrong MAC (with a key)
//	""       401
//	others   400
type fakeServer struct {
	cfg  fakeConfig
	Addr string // dial address: "127.0.0.1:port" or "unix:///path"
	quit chan struct{}

	mu      sync.Mutex // guards ln, conns, closed, dialled
	ln      net.Listener
	conns   map[net.Conn]struct{}
	closed  bool
	dialled int // connections accepted in total

	wg sync.WaitGroup // accept loops and connections
}

// socketDir returns a short temporary directory for Unix sockets (their
// paths are limited to about 107 bytes), removed at cleanup.
func socketDir(t testing.TB) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "pt")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

func startFake(t testing.TB, cfg fakeConfig) *fakeServer {
	t.Helper()
	s := &fakeServer{cfg: cfg, quit: make(chan struct{}), conns: map[net.Conn]struct{}{}}
	network, address := "tcp", "127.0.0.1:0"
	if cfg.Unix {
		network, address = "unix", filepath.Join(socketDir(t), "s")
	}
	if err := s.listen(network, address); err != nil {
		t.Fatal(err)
	}
	if cfg.Unix {
		s.Addr = "unix://" + address
	} else {
		s.Addr = s.ln.Addr().String()
	}
	t.Cleanup(s.Close)
	return s
}

func (s *fakeServer) listen(network, address string) error {
	ln, err := net.Listen(network, address)
	if err != nil {
		return err
	}
	if s.cfg.TLS != nil {
		ln = tls.NewListener(ln, s.cfg.TLS)
	}
	s.mu.Lock()
	s.ln = ln
	s.mu.Unlock()
	s.wg.Add(1)
	go s.accept(ln)
	return nil
}

func (s *fakeServer) accept(ln net.Listener) {
	defer s.wg.Done()
	for {
		conn, err := ln.Accept()
		if err != nil {
			return
		}
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			conn.Close()
			return
		}
		s.conns[conn] = struct{}{}
		s.dialled++
		s.wg.Add(1)
		s.mu.Unlock()
		go s.serve(conn)
	}
}

// Accepted returns how many connections the server accepted.
func (s *fakeServer) Accepted() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.dialled
}

// dropAll closes the listener and every connection.
func (s *fakeServer) dropAll() {
	s.mu.Lock()
	s.ln.Close()
	for c := range s.conns {
		c.Close()
	}
	s.mu.Unlock()
}

// Restart closes the listener and every connection and listens again on
// the same address, as a restarted server would.
func (s *fakeServer) Restart(t testing.TB) {
	t.Helper()
	s.dropAll()
	network, address := "tcp", s.Addr
	if s.cfg.Unix {
		network, address = "unix", s.Addr[len("unix://"):]
	}
	if err := s.listen(network, address); err != nil {
		t.Fatal(err)
	}
}

// Close stops the server and waits for its goroutines.
func (s *fakeServer) Close() {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	s.closed = true
	close(s.quit)
	s.mu.Unlock()
	s.dropAll()
	s.wg.Wait()
}

// fakeConn is one connection's state; its buffers are reused so that the
// server allocates nothing per request (allocation tests count every
// goroutine's allocations).
type fakeConn struct {
	s    *fakeServer
	conn net.Conn
	br   *bufio.Reader
	mac  *codec.MAC
	hdr  [codec.HeaderLen]byte
	body []byte
	out  []byte
}

func (s *fakeServer) serve(conn net.Conn) {
	defer s.wg.Done()
	defer func() {
		s.mu.Lock()
		delete(s.conns, conn)
		s.mu.Unlock()
		conn.Close()
	}()
	fc := &fakeConn{s: s, conn: conn, br: bufio.NewReaderSize(conn, 64<<10)}
	if s.cfg.Key != nil {
		fc.mac = codec.NewMAC(s.cfg.Key)
	}
	for fc.serveOne() {
	}
}

// answer writes one answer frame; mac overrides the MAC when non-nil.
func (fc *fakeConn) answer(status codec.Status, seq uint32, req, payload []byte) bool {
	var err error
	fc.out, err = codec.AppendFrame(fc.out[:0], codec.Frame{Status: status, Seq: seq, Request: req, Payload: payload}, fc.mac)
	if err != nil {
		return false
	}
	_, err = fc.conn.Write(fc.out)
	return err == nil
}

func (fc *fakeConn) serveOne() bool {
	if _, err := io.ReadFull(fc.br, fc.hdr[:]); err != nil {
		return false
	}
	h, _ := codec.ParseHeader(fc.hdr[:])
	limit := codec.Options{MaxPayload: fc.s.cfg.MaxPayload}.Limit()
	if h.PayloadLen > limit {
		le := &codec.LimitError{Declared: uint64(h.PayloadLen), Limit: uint64(limit)}
		fc.answer(codec.StatusPayloadTooLarge, h.Seq, nil, []byte(le.Reason()))
		return false
	}
	n := h.FrameLen(fc.mac != nil) - codec.HeaderLen
	if cap(fc.body) < n {
		fc.body = make([]byte, n)
	}
	body := fc.body[:n]
	if _, err := io.ReadFull(fc.br, body); err != nil {
		return false
	}
	req := body[:h.RequestLen]
	payload := body[h.RequestLen : int(h.RequestLen)+int(h.PayloadLen)]
	if fc.mac != nil {
		if err := fc.mac.Verify(payload, body[int(h.RequestLen)+int(h.PayloadLen):]); err != nil {
			fc.answer(codec.StatusBadMAC, h.Seq, req, []byte("HMAC verification failed"))
			return false
		}
	}
	switch string(req) {
	case codec.ProtoCheck:
		switch fc.s.cfg.Proto {
		case "none":
			return fc.answer(codec.StatusNoHandler, h.Seq, req, []byte("no handler"))
		case "v1":
			fc.answer(codec.StatusVersionMismatch, h.Seq, req, []byte{1})
			return false
		}
		return fc.answer(codec.StatusOK, h.Seq, req, []byte{codec.ProtocolVersion})
	case "":
		return fc.answer(codec.StatusEmptyRequest, h.Seq, req, []byte("empty request"))
	case "echo":
		return fc.answer(codec.StatusOK, h.Seq, req, payload)
	case "fail":
		return fc.answer(codec.StatusHandlerError, h.Seq, req, []byte("boom"))
	case "code":
		c, _ := strconv.Atoi(string(payload))
		return fc.answer(codec.Status(c), h.Seq, req, []byte("code "+string(payload)))
	case "big":
		n, _ := strconv.Atoi(string(payload))
		return fc.answer(codec.StatusOK, h.Seq, req, make([]byte, n))
	case "hang":
		<-fc.s.quit
		return false
	case "cut":
		fc.out, _ = codec.AppendFrame(fc.out[:0], codec.Frame{Status: codec.StatusOK, Seq: h.Seq, Request: req, Payload: make([]byte, 100)}, fc.mac)
		fc.conn.Write(fc.out[:len(fc.out)/2])
		return false
	case "huge":
		var hb [codec.HeaderLen]byte
		codec.PutHeader(hb[:], codec.StatusOK, h.Seq, 0, 0)
		binary.LittleEndian.PutUint32(hb[7:11], 2<<30)
		fc.conn.Write(hb[:])
		<-fc.s.quit
		return false
	case "badseq":
		return fc.answer(codec.StatusOK, h.Seq+1, req, payload)
	case "badmac":
		fc.out, _ = codec.AppendFrame(fc.out[:0], codec.Frame{Status: codec.StatusOK, Seq: h.Seq, Request: req, Payload: payload}, nil)
		fc.out = append(fc.out, make([]byte, codec.MACLen)...)
		_, err := fc.conn.Write(fc.out)
		return err == nil
	}
	return fc.answer(codec.StatusNoHandler, h.Seq, req, []byte("no handler for "+strconv.Quote(string(req))))
}
