package client_test

import (
	"bufio"
	"crypto/rand"
	"crypto/tls"
	"encoding/binary"
	"io"
	"math"
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
	// Proto says how PROTOCHECK is answered:
	//
	//	""        versions 0 and 1, whichever is offered (a connection whose
	//	          first frame is not PROTOCHECK is a version-0 session)
	//	"v0"      a classic server: 200 to 0x00, 497 0x00 to anything else
	//	"v1only"  requires version 1: 497 0x01 to 0x00, and a connection
	//	          whose first frame is not PROTOCHECK is refused
	//	"v2"      497 0x02 to everything
	//	"badv1"   200 with a malformed payload (0x01 and no nonce) to 0x01
	//	"none"    400, as a server without PROTOCHECK
	Proto      string
	Key        []byte // HMAC key; nil for none
	MaxPayload uint32 // request payload limit; 0 means 4 MiB
	TLS        *tls.Config
	Unix       bool // listen on a Unix socket instead of 127.0.0.1:0
}

// fakeServer answers these requests:
//
//	echo     200 and the payload
//	fail     500 "boom" (connection stays open)
//	busy     503 "server busy" on version 1, 500 "server busy" on version 0
//	slow     504 "handler timeout" on version 1, 500 "handler timeout" on 0
//	code     the status written in decimal in the payload, reason "code N"
//	big      200 and as many bytes as the payload says in decimal
//	hang     never answers (until the server closes)
//	cut      half an answer, then closes the connection
//	huge     a header declaring a 2 GiB payload, then nothing
//	badseq   an answer with the wrong sequence number (duly signed)
//	badreq   an answer for request "other" (duly signed)
//	badmac   an answer with a MAC or tag of zeros (with a key)
//	tamper   an answer signed, then one payload byte changed (with a key)
//	reflect  an answer tagged as if sent by a client (version 1, keyed)
//	""       401
//	others   400
//
// On a version-1 session it enforces the sequence rule: a request whose
// seq is not the previous one's plus 1, or any after seq 2^32−1, is
// answered 502 (keyed) or 498 and the connection closed; so is a second
// PROTOCHECK.
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
	s     *fakeServer
	conn  net.Conn
	br    *bufio.Reader
	mac   *codec.MAC      // classic MAC; nil without a key
	fmac  *codec.FrameMAC // version-1 session tag; nil unless keyed version 1
	v1    bool            // the session speaks version 1
	first bool            // no frame read yet
	next  uint32          // version 1: the seq the next request must carry
	spent bool            // version 1: seq 2^32-1 was used, nothing more is accepted
	hdr   [codec.HeaderLen]byte
	body  []byte
	out   []byte
}

func (s *fakeServer) serve(conn net.Conn) {
	defer s.wg.Done()
	defer func() {
		s.mu.Lock()
		delete(s.conns, conn)
		s.mu.Unlock()
		conn.Close()
	}()
	fc := &fakeConn{s: s, conn: conn, br: bufio.NewReaderSize(conn, 64<<10), first: true}
	if s.cfg.Key != nil {
		fc.mac = codec.NewMAC(s.cfg.Key)
	}
	for fc.serveOne() {
	}
}

// frame appends one answer frame to fc.out[:0], signed as the session
// signs (dir is the direction its tag claims on a keyed version-1 session).
func (fc *fakeConn) frame(status codec.Status, seq uint32, req, payload []byte, dir codec.Direction) {
	f := codec.Frame{Status: status, Seq: seq, Request: req, Payload: payload}
	if fc.v1 {
		fc.out, _ = codec.AppendFrameV1(fc.out[:0], f, fc.fmac, dir)
	} else {
		fc.out, _ = codec.AppendFrame(fc.out[:0], f, fc.mac)
	}
}

// answer writes one answer frame.
func (fc *fakeConn) answer(status codec.Status, seq uint32, req, payload []byte) bool {
	fc.frame(status, seq, req, payload, codec.ServerToClient)
	_, err := fc.conn.Write(fc.out)
	return err == nil
}

// refuse answers a version-1 request breaking the rules (502 when keyed,
// 498 when not); the connection is then closed.
func (fc *fakeConn) refuse(seq uint32, req []byte, why string) bool {
	status := codec.StatusReadError
	if fc.fmac != nil {
		status = codec.StatusBadMAC
	}
	fc.answer(status, seq, req, []byte(why))
	return false
}

// protoCheck answers the PROTOCHECK that opens a session, as cfg.Proto
// says, and switches the session to version 1 when agreed on.
func (fc *fakeConn) protoCheck(h codec.Header, req, payload []byte) bool {
	mismatch := func(v byte) bool {
		fc.answer(codec.StatusVersionMismatch, h.Seq, req, []byte{v})
		return false
	}
	v, clientNonce, err := codec.ParseProtoCheck(payload)
	switch proto := fc.s.cfg.Proto; {
	case proto == "none":
		return fc.answer(codec.StatusNoHandler, h.Seq, req, []byte("no handler"))
	case proto == "v2":
		return mismatch(2)
	case err == nil && v == codec.ProtocolV0 && proto == "v1only":
		return mismatch(codec.ProtocolV1)
	case err == nil && v == codec.ProtocolV0:
		return fc.answer(codec.StatusOK, h.Seq, req, []byte{codec.ProtocolV0})
	case proto == "v0":
		return mismatch(codec.ProtocolV0)
	case err != nil || v != codec.ProtocolV1:
		return mismatch(codec.ProtocolV1)
	case proto == "badv1":
		return fc.answer(codec.StatusOK, h.Seq, req, []byte{codec.ProtocolV1})
	}
	var serverNonce [codec.NonceLen]byte
	rand.Read(serverNonce[:])
	if !fc.answer(codec.StatusOK, h.Seq, req, codec.AppendProtoCheck(nil, codec.ProtocolV1, serverNonce[:])) {
		return false
	}
	fc.v1, fc.next, fc.spent = true, h.Seq+1, h.Seq == math.MaxUint32
	if fc.mac != nil {
		k := codec.SessionKey(fc.s.cfg.Key, clientNonce, serverNonce[:])
		fc.fmac, fc.mac = codec.NewFrameMAC(k[:]), nil
	}
	return true
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
	o := codec.Options{MAC: fc.s.cfg.Key != nil}
	if fc.v1 {
		o.Version = codec.ProtocolV1
	}
	n := o.FrameLen(h) - codec.HeaderLen
	if cap(fc.body) < n {
		fc.body = make([]byte, n)
	}
	body := fc.body[:n]
	if _, err := io.ReadFull(fc.br, body); err != nil {
		return false
	}
	req := body[:h.RequestLen]
	payload := body[h.RequestLen : int(h.RequestLen)+int(h.PayloadLen)]
	mac := body[int(h.RequestLen)+int(h.PayloadLen):]
	var macErr error
	switch {
	case fc.fmac != nil:
		macErr = fc.fmac.Verify(codec.ClientToServer, codec.Frame{Status: h.Status, Seq: h.Seq, Request: req, Payload: payload, MAC: mac})
	case fc.mac != nil:
		macErr = fc.mac.Verify(payload, mac)
	}
	if macErr != nil {
		fc.answer(codec.StatusBadMAC, h.Seq, req, []byte("HMAC verification failed"))
		return false
	}
	first := fc.first
	fc.first = false
	switch {
	case first && string(req) == codec.ProtoCheck:
		return fc.protoCheck(h, req, payload)
	case first && fc.s.cfg.Proto == "v1only":
		return fc.refuse(h.Seq, req, "version 1 required: PROTOCHECK first")
	case fc.v1 && (fc.spent || h.Seq != fc.next):
		return fc.refuse(h.Seq, req, "sequence rule broken")
	case fc.v1 && string(req) == codec.ProtoCheck:
		return fc.refuse(h.Seq, req, "PROTOCHECK again")
	}
	if fc.v1 {
		fc.next, fc.spent = h.Seq+1, h.Seq == math.MaxUint32
	}
	switch string(req) {
	case codec.ProtoCheck: // again, on a version-0 session
		return fc.answer(codec.StatusOK, h.Seq, req, []byte{codec.ProtocolV0})
	case "":
		return fc.answer(codec.StatusEmptyRequest, h.Seq, req, []byte("empty request"))
	case "echo":
		return fc.answer(codec.StatusOK, h.Seq, req, payload)
	case "fail":
		return fc.answer(codec.StatusHandlerError, h.Seq, req, []byte("boom"))
	case "busy", "slow":
		status, reason := codec.StatusBusy, "server busy"
		if string(req) == "slow" {
			status, reason = codec.StatusHandlerTimeout, "handler timeout"
		}
		if !fc.v1 {
			status = codec.StatusHandlerError
		}
		return fc.answer(status, h.Seq, req, []byte(reason))
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
		fc.frame(codec.StatusOK, h.Seq, req, make([]byte, 100), codec.ServerToClient)
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
	case "badreq":
		return fc.answer(codec.StatusOK, h.Seq, []byte("other"), payload)
	case "badmac", "tamper", "reflect":
		dir := codec.ServerToClient
		if string(req) == "reflect" {
			dir = codec.ClientToServer
		}
		fc.frame(codec.StatusOK, h.Seq, req, payload, dir)
		switch {
		case string(req) == "tamper":
			fc.out[codec.HeaderLen+len(req)] ^= 1 // the payload's first byte
		case string(req) == "badmac":
			clear(fc.out[len(fc.out)-o.MACLen():])
		}
		_, err := fc.conn.Write(fc.out)
		return err == nil
	}
	return fc.answer(codec.StatusNoHandler, h.Seq, req, []byte("no handler for "+strconv.Quote(string(req))))
}
