//go:build linux

package engine

import (
	"bytes"
	"io"
	"log/slog"
	"net"
	"testing"

	"github.com/panjf2000/gnet/v2"
)

// outboundProbe answers the first byte it reads with more than the socket
// takes at once, then takes back what gnet still holds.
type outboundProbe struct {
	gnet.BuiltinEventEngine
	answer []byte
	result chan outboundResult
}

type outboundResult struct {
	reachable bool
	held      int    // gnet's count before the take
	taken     []byte // what takeOutbound returned
	left      int    // gnet's count after it
}

func (p *outboundProbe) OnTraffic(c gnet.Conn) gnet.Action {
	_, _ = c.Discard(-1)
	_, _ = c.Write(p.answer)
	r := outboundResult{reachable: outboundOf(c) != nil, held: c.OutboundBuffered()}
	r.taken, _ = takeOutbound(c)
	r.left = c.OutboundBuffered()
	p.result <- r
	return gnet.None
}

// TestOutboundReachable pins what the reactor's half-close relies on
// (gnet_outbound.go): gnet's connection still keeps its unsent bytes in an
// elastic.Buffer field named outboundBuffer, and takeOutbound removes
// exactly those bytes, the tail of the answer, leaving gnet nothing to
// write. A gnet upgrade that moves the field fails here.
func TestOutboundReachable(t *testing.T) {
	answer := bytes.Repeat([]byte("0123456789abcdef"), 1<<20) // 16 MiB: more than any socket buffer
	probe := &outboundProbe{answer: answer, result: make(chan outboundResult, 1)}
	cli, err := gnet.NewClient(probe, gnet.WithLogger(gnetLogger{slog.New(slog.NewTextHandler(io.Discard, nil))}))
	if err != nil {
		t.Fatal(err)
	}
	if err := cli.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cli.Stop() }()

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	peer, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer peer.Close()
	server, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	gc, err := cli.Enroll(server)
	if err != nil {
		t.Fatal(err)
	}
	_ = server.Close() // Enroll took a duplicate
	defer func() { _ = gc.Close() }()

	if _, err := peer.Write([]byte{1}); err != nil {
		t.Fatal(err)
	}
	r := <-probe.result
	if !r.reachable {
		t.Fatal("gnet's outbound buffer is not reachable: the reactor's half-close would cut large answers")
	}
	if r.held == 0 || r.held == len(answer) {
		t.Fatalf("gnet held %d of %d bytes; the test needs a partly written answer", r.held, len(answer))
	}
	if len(r.taken) != r.held || !bytes.Equal(r.taken, answer[len(answer)-r.held:]) {
		t.Fatalf("took %d bytes, want the answer's last %d", len(r.taken), r.held)
	}
	if r.left != 0 {
		t.Fatalf("gnet still holds %d bytes after the take", r.left)
	}
}
