package engine

import (
	"fmt"
	"strings"
	"testing"

	"github.com/petrel-rpc/petrel/codec"
)

// The one decision every transport takes for a connection waiting for
// bytes (defect 3 of #13 was this decision made three ways).
func TestLifecycleAwait(t *testing.T) {
	cases := []struct {
		from     phase
		v        verdict
		draining bool
		want     phase
		close    bool
		clocked  bool
	}{
		{phaseDispatched, vEmpty, false, phaseIdle, false, true},
		{phaseIdle, vEmpty, false, phaseIdle, false, false},
		{phaseIdle, vEmpty, true, phaseIdle, true, false},
		{phaseIdle, vPartial, false, phaseReading, false, true},
		// A trickling peer does not restart the read timeout.
		{phaseReading, vPartial, false, phaseReading, false, false},
		// Draining closes a partial frame at once, on every transport.
		{phaseReading, vPartial, true, phaseReading, true, false},
		{phaseWriting, vPartial, true, phaseReading, true, true},
	}
	for _, c := range cases {
		var l lifecycle
		l.enter(c.from, 8000)
		calls := 0
		clock := func() int64 { calls++; return 16000 }
		closeNow := l.await(c.v, c.draining, clock)
		p, since := l.state()
		if p != c.want || closeNow != c.close || (calls > 0) != c.clocked {
			t.Errorf("from %v, verdict %d, draining %v: phase %v, close %v, clock read %d times; want %v, %v, clock read: %v",
				c.from, c.v, c.draining, p, closeNow, calls, c.want, c.close, c.clocked)
		}
		if wantSince := map[bool]int64{false: 8000, true: 16000}[c.clocked]; since != wantSince {
			t.Errorf("from %v, verdict %d: since %d, want %d", c.from, c.v, since, wantSince)
		}
	}
}

// The one decision every transport takes once an answer is handed to the
// socket (defect 7 of #13: the idle timer must start when the answer has
// left, not when it was queued).
func TestLifecycleAnswered(t *testing.T) {
	cases := []struct {
		unsent, closes bool
		want           phase
		entered        bool
	}{
		{true, false, phaseWriting, true},
		{true, true, phaseWriting, true},     // the refusal's bytes leave first
		{false, true, phaseLingering, false}, // the transport shuts, then enters lingering
		{false, false, phaseIdle, true},
	}
	for _, c := range cases {
		var l lifecycle
		l.enter(phaseDispatched, 8000)
		got := l.answered(c.unsent, c.closes, 16000)
		p, since := l.state()
		if got != c.want || (since == 16000) != c.entered || (c.entered && p != c.want) {
			t.Errorf("unsent %v, closes %v: %v (phase %v since %d); want %v, entered %v", c.unsent, c.closes, got, p, since, c.want, c.entered)
		}
	}
}

// scriptSource is a frameSource over a byte slice: more appends the next
// arrival (a blocking transport's read) or pauses when none is left (an
// event transport's wait), and every call is recorded.
type scriptSource struct {
	buf      []byte
	arrivals [][]byte
	serveAs  step // what serve returns
	calls    []string
}

func (s *scriptSource) inbound() []byte { return s.buf }

func (s *scriptSource) more(v verdict, _ []byte, need int) step {
	s.calls = append(s.calls, fmt.Sprintf("more(%s,%d)", map[verdict]string{vEmpty: "empty", vPartial: "partial"}[v], need))
	if len(s.arrivals) == 0 {
		return stepPause
	}
	s.buf = append(s.buf, s.arrivals[0]...)
	s.arrivals = s.arrivals[1:]
	return stepNext
}

func (s *scriptSource) refuse(_ []byte, err error) step {
	s.calls = append(s.calls, "refuse")
	if err == nil {
		panic("refusal without a cause")
	}
	return stepClose
}

func (s *scriptSource) serve(f codec.Frame, raw []byte) step {
	s.calls = append(s.calls, fmt.Sprintf("serve(%s,%d)", f.Request, len(raw)))
	s.buf = s.buf[len(raw):]
	return s.serveAs
}

// The one decode loop every transport runs (reactor plain, reactor TLS
// and std differ only in their frameSource): what it does with each shape
// of inbound bytes, draining or not.
func TestDecodeLoop(t *testing.T) {
	frame := func(payload int) []byte {
		b, err := codec.AppendFrame(nil, codec.Frame{Seq: 1, Request: []byte("echo"), Payload: make([]byte, payload)}, nil)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	f10 := frame(10) // 25 bytes
	big := frame(2000)
	cases := []struct {
		name     string
		buf      []byte
		arrivals [][]byte
		draining bool
		serveAs  step
		want     string
		end      step
		phase    phase
	}{
		{"nothing buffered", nil, nil, false, stepNext, "more(empty,11)", stepPause, phaseIdle},
		{"nothing buffered, draining", nil, nil, true, stepNext, "", stepClose, phaseIdle},
		{"part of a header", f10[:5], nil, false, stepNext, "more(partial,6)", stepPause, phaseReading},
		{"part of a header, draining", f10[:5], nil, true, stepNext, "", stepClose, phaseReading},
		{"header, part of the payload", f10[:20], nil, false, stepNext, "more(partial,5)", stepPause, phaseReading},
		{"a frame", f10, nil, false, stepNext, "serve(echo,25) more(empty,11)", stepPause, phaseIdle},
		{"two frames and a part", cat(f10, f10, f10[:3]), nil, false, stepNext,
			"serve(echo,25) serve(echo,25) more(partial,8)", stepPause, phaseReading},
		// A frame handed to another goroutine stops the loop; what follows
		// it waits.
		{"handed off", cat(f10, f10), nil, false, stepPause, "serve(echo,25)", stepPause, phaseIdle},
		// Whole frames already read are answered while draining.
		{"a frame, draining", f10, nil, true, stepNext, "serve(echo,25)", stepClose, phaseIdle},
		{"a trickle (blocking reads)", f10[:4], [][]byte{f10[4:12], f10[12:]}, false, stepNext,
			"more(partial,7) more(partial,3) serve(echo,25) more(empty,11)", stepPause, phaseIdle},
		// Refused from its header and request text, before the payload.
		{"over the payload limit", big[:codec.HeaderLen+4], nil, false, stepNext, "refuse", stepClose, phaseIdle},
		{"refused after a frame", cat(f10, big[:codec.HeaderLen+4]), nil, false, stepNext, "serve(echo,25) refuse", stepClose, phaseIdle},
	}
	for _, c := range cases {
		s := newTestServer(t, Config{MaxPayload: 1000})
		var sess session
		sess.init(s)
		s.closed.Store(c.draining)
		src := &scriptSource{buf: c.buf, arrivals: c.arrivals, serveAs: c.serveAs}
		var l lifecycle
		l.enter(phaseIdle, 1)
		end := sess.decode(src, &l, func() int64 { return 2 })
		if got := strings.Join(src.calls, " "); got != c.want || end != c.end || l.phase() != c.phase {
			t.Errorf("%s: %q, step %d, phase %v; want %q, step %d, phase %v", c.name, got, end, l.phase(), c.want, c.end, c.phase)
		}
	}
}

func cat(bs ...[]byte) []byte {
	var out []byte
	for _, b := range bs {
		out = append(out, b...)
	}
	return out
}
