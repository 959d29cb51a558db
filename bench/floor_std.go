package bench

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"sync"
	"time"

	"github.com/petrel-rpc/petrel/codec"
	"github.com/petrel-rpc/petrel/internal/frameio"
)

// The handlers every system serves.
const (
	reqEcho  = "echo"  // answers 200 with the request's payload
	reqSleep = "sleep" // blocks ServeConfig.Slow, then echoes
)

// What a floor server does with a request.
type route int

const (
	routeEcho route = iota
	routeSleep
	routeProtoOK
	routeProtoBad
	routeNoHandler
)

// floorRoute decides, for the minimal servers, what to do with a request.
func floorRoute(req, payload []byte) route {
	switch {
	case string(req) == reqEcho:
		return routeEcho
	case string(req) == reqSleep:
		return routeSleep
	case string(req) == codec.ProtoCheck:
		if bytes.Equal(payload, []byte{codec.ProtocolVersion}) {
			return routeProtoOK
		}
		return routeProtoBad
	}
	return routeNoHandler
}

var protoVersion = []byte{codec.ProtocolVersion}

// connServer accepts connections and serves each on a goroutine of its
// own, keeping track of them so that Close can close them all and wait.
type connServer struct {
	ln    net.Listener
	wg    sync.WaitGroup
	mu    sync.Mutex // guards conns
	conns map[net.Conn]struct{}
}

// startConnServer serves ln with serve, which must return once its
// connection is closed; the connection is closed after it returns.
func startConnServer(ln net.Listener, serve func(net.Conn)) *connServer {
	s := &connServer{ln: ln, conns: map[net.Conn]struct{}{}}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s.mu.Lock()
			s.conns[c] = struct{}{}
			s.mu.Unlock()
			s.wg.Add(1)
			go func() {
				defer s.wg.Done()
				serve(c)
				s.mu.Lock()
				delete(s.conns, c)
				s.mu.Unlock()
				c.Close()
			}()
		}
	}()
	return s
}

// Addr returns the listening address.
func (s *connServer) Addr() string { return lnAddr(s.ln) }

// Close closes the listener and every connection, and waits for their
// goroutines.
func (s *connServer) Close() error {
	err := s.ln.Close()
	s.mu.Lock()
	for c := range s.conns {
		c.Close()
	}
	s.mu.Unlock()
	s.wg.Wait()
	return err
}

// floorStd is the minimal stdlib Petrel server: one goroutine per
// connection, a growable read buffer parsed in place, one write per answer.
type floorStd struct {
	*connServer
	cfg ServeConfig
}

func serveFloorStd(_ context.Context, c ServeConfig) (Server, error) {
	ln, err := listen(c.Addr, c.TLS)
	if err != nil {
		return nil, err
	}
	s := &floorStd{cfg: c}
	s.connServer = startConnServer(ln, s.serveConn)
	return s, nil
}

func (s *floorStd) serveConn(c net.Conn) {
	opts := codec.Options{MAC: s.cfg.HMACKey != nil}
	var mac *codec.MAC
	if opts.MAC {
		mac = codec.NewMAC(s.cfg.HMACKey)
	}
	var fr frameReader
	var out []byte
	for {
		f, err := fr.next(c, opts)
		if err != nil {
			return
		}
		if mac != nil && mac.Verify(f.Payload, f.MAC) != nil {
			out, _ = codec.AppendFrame(out[:0], codec.Frame{Status: codec.StatusBadMAC, Seq: f.Seq, Request: f.Request}, mac)
			c.Write(out)
			return
		}
		status, payload, closeAfter := codec.StatusOK, f.Payload, false
		switch floorRoute(f.Request, f.Payload) {
		case routeSleep:
			time.Sleep(s.cfg.Slow)
		case routeProtoOK:
			payload = protoVersion
		case routeProtoBad:
			status, payload, closeAfter = codec.StatusVersionMismatch, protoVersion, true
		case routeNoHandler:
			status, payload = codec.StatusNoHandler, nil
		}
		if err := writeFrame(c, &out, codec.Frame{Status: status, Seq: f.Seq, Request: f.Request, Payload: payload}, mac); err != nil || closeAfter {
			return
		}
	}
}

// bigFrame is the frame size above which frames are written with writev
// instead of being copied into one buffer.
const bigFrame = 64 << 10

// writeFrame writes f to w: small frames copied into *scratch and written
// at once, large ones as a vectored write so the payload is not copied.
func writeFrame(w io.Writer, scratch *[]byte, f codec.Frame, mac *codec.MAC) error {
	if codec.Len(f, mac != nil) <= bigFrame {
		b, err := codec.AppendFrame((*scratch)[:0], f, mac)
		if err != nil {
			return err
		}
		*scratch = b
		_, err = w.Write(b)
		return err
	}
	var bufs codec.Buffers
	v, err := bufs.Frame(f, mac)
	if err != nil {
		return err
	}
	nb := net.Buffers(v)
	_, err = nb.WriteTo(w)
	return err
}

// frameReader reads Petrel frames from a stream into a buffer it grows as
// needed, keeping bytes that arrive after a frame for the next one. Frames
// it returns alias its buffer and are valid until the next call.
// frameReader reads frames for the load client and the stdlib floor;
// a stream that ends inside a frame gives errShortFrame.
type frameReader struct{ frameio.Reader }

var errShortFrame = errors.New("connection closed in the middle of a frame")

func (r *frameReader) next(rd io.Reader, opts codec.Options) (codec.Frame, error) {
	f, err := r.Next(rd, opts)
	if err != nil && r.Buffered() > 0 && errors.Is(err, io.EOF) {
		err = errShortFrame
	}
	return f, err
}
