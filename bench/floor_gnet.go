package bench

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"syscall"
	"time"

	"github.com/panjf2000/gnet/v2"

	"github.com/petrel-rpc/petrel/codec"
)

// floorGnet is the minimal gnet v2 Petrel server: frames parsed in place
// from Peek and answered inline on the event loop with Writev. The "sleep"
// handler, which must not block the loop, runs on its own goroutine and
// answers with AsyncWrite; the connection reads nothing more until then.
type floorGnet struct {
	gnet.BuiltinEventEngine
	cfg  ServeConfig
	opts codec.Options
	eng  gnet.Engine
	addr string
	boot chan error // receives the bound address's error, once
	done chan error // receives gnet.Run's result
}

// gconn is the per-connection state, touched on the event loop only.
type gconn struct {
	busy bool       // a "sleep" answer is pending
	mac  *codec.MAC // nil without HMAC
	hdr  [codec.HeaderLen]byte
	vec  [4][]byte
}

func serveFloorGnet(_ context.Context, c ServeConfig) (Server, error) {
	if c.TLS != nil {
		return nil, errors.New("floor-gnet: no TLS")
	}
	network, a := splitAddr(c.Addr)
	s := &floorGnet{
		cfg:  c,
		opts: codec.Options{MAC: c.HMACKey != nil},
		boot: make(chan error, 1),
		done: make(chan error, 1),
	}
	if network == "unix" {
		s.addr = c.Addr
	}
	go func() {
		s.done <- gnet.Run(s, network+"://"+a,
			gnet.WithMulticore(true),
			gnet.WithTCPNoDelay(gnet.TCPNoDelay),
			gnet.WithLogger(quietLogger{}))
	}()
	select {
	case err := <-s.boot:
		if err != nil {
			return nil, err
		}
		return s, nil
	case err := <-s.done:
		return nil, fmt.Errorf("floor-gnet: %w", err)
	}
}

func (s *floorGnet) OnBoot(eng gnet.Engine) gnet.Action {
	s.eng = eng
	if s.addr != "" {
		s.boot <- nil
		return gnet.None
	}
	fd, err := eng.Dup()
	if err != nil {
		s.boot <- err
		return gnet.Shutdown
	}
	defer syscall.Close(fd)
	sa, err := syscall.Getsockname(fd)
	if err != nil {
		s.boot <- err
		return gnet.Shutdown
	}
	if in4, ok := sa.(*syscall.SockaddrInet4); ok {
		ip := in4.Addr
		s.addr = fmt.Sprintf("%d.%d.%d.%d:%d", ip[0], ip[1], ip[2], ip[3], in4.Port)
		s.boot <- nil
		return gnet.None
	}
	s.boot <- errors.New("floor-gnet: listens on IPv4 only")
	return gnet.Shutdown
}

func (s *floorGnet) Addr() string { return s.addr }

func (s *floorGnet) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	err := s.eng.Stop(ctx)
	if p, ok := strings.CutPrefix(s.addr, "unix://"); ok {
		os.Remove(p)
	}
	return err
}

func (s *floorGnet) OnOpen(c gnet.Conn) ([]byte, gnet.Action) {
	gc := &gconn{}
	if s.cfg.HMACKey != nil {
		gc.mac = codec.NewMAC(s.cfg.HMACKey)
	}
	c.SetContext(gc)
	return nil, gnet.None
}

func (s *floorGnet) OnTraffic(c gnet.Conn) gnet.Action {
	gc := c.Context().(*gconn)
	for !gc.busy {
		// Peek only whole frames: peeking at a partial frame that spans
		// gnet's ring buffer copies it, which is quadratic for big frames.
		avail := c.InboundBuffered()
		if avail < codec.HeaderLen {
			return gnet.None
		}
		hb, _ := c.Peek(codec.HeaderLen)
		_, _, need, err := codec.Parse(hb, s.opts)
		if err != nil {
			return gnet.Close
		}
		if codec.HeaderLen+need > avail {
			return gnet.None
		}
		buf, _ := c.Peek(codec.HeaderLen + need)
		f, n, _, err := codec.Parse(buf, s.opts)
		if err != nil || n == 0 {
			return gnet.Close
		}
		if gc.mac != nil && gc.mac.Verify(f.Payload, f.MAC) != nil {
			s.write(c, gc, codec.Frame{Status: codec.StatusBadMAC, Seq: f.Seq, Request: f.Request})
			return gnet.Close
		}
		status, payload := codec.StatusOK, f.Payload
		switch floorRoute(f.Request, f.Payload) {
		case routeSleep:
			s.sleep(c, gc, f)
			c.Discard(n)
			return gnet.None
		case routeProtoOK:
			payload = protoVersion
		case routeProtoBad:
			s.write(c, gc, codec.Frame{Status: codec.StatusVersionMismatch, Seq: f.Seq, Request: f.Request, Payload: protoVersion})
			return gnet.Close
		case routeNoHandler:
			status, payload = codec.StatusNoHandler, nil
		}
		if s.write(c, gc, codec.Frame{Status: status, Seq: f.Seq, Request: f.Request, Payload: payload}) != nil {
			return gnet.Close
		}
		c.Discard(n)
	}
	return gnet.None
}

// write frames f into the connection's scratch header and writes it with
// Writev, which copies whatever the socket does not take at once: f may
// alias the Peek buffer. Event loop only.
func (s *floorGnet) write(c gnet.Conn, gc *gconn, f codec.Frame) error {
	if err := codec.PutHeader(gc.hdr[:], f.Status, f.Seq, len(f.Request), len(f.Payload)); err != nil {
		return err
	}
	v := append(gc.vec[:0], gc.hdr[:], f.Request, f.Payload)
	if gc.mac != nil {
		v = append(v, gc.mac.AppendSign(nil, f.Payload))
	}
	_, err := c.Writev(v)
	return err
}

// sleep answers f after the slow delay, off the loop. f's bytes are copied
// first: they alias the loop's buffer.
func (s *floorGnet) sleep(c gnet.Conn, gc *gconn, f codec.Frame) {
	gc.busy = true
	var out []byte
	var mac *codec.MAC
	if gc.mac != nil {
		mac = gc.mac.Clone()
	}
	out, _ = codec.AppendFrame(out, codec.Frame{Status: codec.StatusOK, Seq: f.Seq, Request: f.Request, Payload: f.Payload}, mac)
	go func() {
		time.Sleep(s.cfg.Slow)
		c.AsyncWrite(out, func(c gnet.Conn, _ error) error {
			// On the loop again: read what arrived meanwhile.
			if gc, ok := c.Context().(*gconn); ok {
				gc.busy = false
				if c.InboundBuffered() > 0 {
					return c.Wake(nil)
				}
			}
			return nil
		})
	}()
}

// quietLogger drops gnet's informational logs (which go to stdout, the
// control channel) and sends errors to stderr.
type quietLogger struct{}

func (quietLogger) Debugf(string, ...any) {}
func (quietLogger) Infof(string, ...any)  {}
func (quietLogger) Warnf(string, ...any)  {}
func (quietLogger) Errorf(f string, a ...any) {
	fmt.Fprintf(os.Stderr, "gnet: "+f+"\n", a...)
}
func (quietLogger) Fatalf(f string, a ...any) {
	fmt.Fprintf(os.Stderr, "gnet: "+f+"\n", a...)
	os.Exit(1)
}
