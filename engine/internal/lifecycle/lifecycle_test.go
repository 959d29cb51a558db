package lifecycle

import (
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/petrel-rpc/petrel/codec"
)

// The phase and its start are one word: a reader sees both of one write.
func TestState(t *testing.T) {
	var l State
	if p, since := l.Load(); p != Handshake || since != 0 {
		t.Fatalf("zero State: %v since %d", p, since)
	}
	l.Enter(Writing, 1_000_000_008)
	l.Progress(2_000_000_016)
	if p, since := l.Load(); p != Writing || since != 2_000_000_016 || l.Phase() != Writing || l.Since() != since {
		t.Fatalf("after progress: %v since %d", p, since)
	}
	for p := Handshake; p <= Closed; p++ {
		l.Enter(p, 123_456_789_000)
		if got, since := l.Load(); got != p || since != 123_456_789_000 {
			t.Errorf("Enter(%v): %v since %d", p, got, since)
		}
	}
	if s := Phase(42).String(); s != "phase?" {
		t.Errorf("an unknown phase is %q", s)
	}
}

// Which phase times out when, and which closes at once when draining: the
// table of the package doc.
func TestDeadline(t *testing.T) {
	to := Timeouts{Handshake: 1 * time.Second, Idle: 2 * time.Second, Read: 3 * time.Second, Write: 4 * time.Second}
	cases := []struct {
		p      Phase
		after  time.Duration // NoDeadline when negative
		drains bool
	}{
		{Handshake, time.Second, true},
		{Idle, 2 * time.Second, true},
		{Reading, 3 * time.Second, true},
		{Dispatched, -1, false},
		{Writing, 4 * time.Second, false},
		{Lingering, LingerTime, false},
		{Closed, -1, false},
	}
	const since = 1_000_000_000
	for _, c := range cases {
		want := int64(NoDeadline)
		if c.after >= 0 {
			want = since + int64(c.after)
		}
		if got := to.Deadline(c.p, since); got != want {
			t.Errorf("%v: deadline %d, want %d", c.p, got, want)
		}
		if got := ClosesWhenDraining(c.p); got != c.drains {
			t.Errorf("%v: closes when draining %v, want %v", c.p, got, c.drains)
		}
	}
	if got := (Timeouts{}).Deadline(Idle, since); got != NoDeadline {
		t.Errorf("no idle timeout: deadline %d", got)
	}
	if got := (Timeouts{}).DeadlineTime(Reading, since); !got.IsZero() {
		t.Errorf("no read timeout: deadline %v", got)
	}
	if got := to.DeadlineTime(Reading, since); !got.Equal(time.Unix(0, since+int64(3*time.Second))) {
		t.Errorf("DeadlineTime: %v", got)
	}
}

// The one decision every transport takes for a connection waiting for
// bytes (defect 3 of #13 was this decision made three ways).
func TestAwait(t *testing.T) {
	cases := []struct {
		from     Phase
		v        Verdict
		draining bool
		want     Phase
		close    bool
		clocked  bool
	}{
		{Dispatched, Empty, false, Idle, false, true},
		{Idle, Empty, false, Idle, false, false},
		{Idle, Empty, true, Idle, true, false},
		{Idle, Partial, false, Reading, false, true},
		// A trickling peer does not restart the read timeout.
		{Reading, Partial, false, Reading, false, false},
		// Draining closes a partial frame at once, on every transport.
		{Reading, Partial, true, Reading, true, false},
		{Writing, Partial, true, Reading, true, true},
	}
	for _, c := range cases {
		var l State
		l.Enter(c.from, 8000)
		calls := 0
		clock := func() int64 { calls++; return 16000 }
		closeNow := l.Await(c.v, c.draining, clock)
		p, since := l.Load()
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
func TestAnswered(t *testing.T) {
	cases := []struct {
		unsent, closes bool
		want           Phase
		entered        bool
	}{
		{true, false, Writing, true},
		{true, true, Writing, true},     // the refusal's bytes leave first
		{false, true, Lingering, false}, // the transport shuts, then enters lingering
		{false, false, Idle, true},
	}
	for _, c := range cases {
		var l State
		l.Enter(Dispatched, 8000)
		got := l.Answered(c.unsent, c.closes, 16000)
		p, since := l.Load()
		if got != c.want || (since == 16000) != c.entered || (c.entered && p != c.want) {
			t.Errorf("unsent %v, closes %v: %v (phase %v since %d); want %v, entered %v", c.unsent, c.closes, got, p, since, c.want, c.entered)
		}
	}
}

// parser is a Decoder with one payload limit for every request, as the
// engine's session is without per-handler limits.
type parser struct{ max uint32 }

func (d parser) Next(buf []byte) (Verdict, codec.Frame, int, int, error) {
	switch {
	case len(buf) == 0:
		return Empty, codec.Frame{}, 0, codec.HeaderLen, nil
	case len(buf) < codec.HeaderLen:
		return Partial, codec.Frame{}, 0, codec.HeaderLen - len(buf), nil
	case len(buf) < codec.HeaderLen+int(buf[6]):
		return Partial, codec.Frame{}, 0, codec.HeaderLen + int(buf[6]) - len(buf), nil
	}
	f, n, need, err := codec.Parse(buf, codec.Options{MaxPayload: d.max})
	switch {
	case err != nil:
		return Refuse, f, 0, 0, err
	case n == 0:
		return Partial, f, 0, need, nil
	}
	return Whole, f, n, 0, nil
}

// scriptSource is a Source over a byte slice: More appends the next
// arrival (a blocking transport's read) or pauses when none is left (an
// event transport's wait), and every call is recorded.
type scriptSource struct {
	buf      []byte
	arrivals [][]byte
	serveAs  Step // what Serve returns
	ahead    bool // arrivals wait unread (in the kernel): ReadAhead says so
	calls    []string
}

func (s *scriptSource) ReadAhead(need int) bool {
	n := 0
	for _, a := range s.arrivals {
		n += len(a)
	}
	return s.ahead && n > 0 && n >= need
}

func (s *scriptSource) Inbound() []byte { return s.buf }

func (s *scriptSource) More(v Verdict, _ []byte, need int) Step {
	s.calls = append(s.calls, fmt.Sprintf("more(%s,%d)", map[Verdict]string{Empty: "empty", Partial: "partial"}[v], need))
	if len(s.arrivals) == 0 {
		return Pause
	}
	s.buf = append(s.buf, s.arrivals[0]...)
	s.arrivals = s.arrivals[1:]
	return Continue
}

func (s *scriptSource) Refuse(_ []byte, err error) Step {
	s.calls = append(s.calls, "refuse")
	if err == nil {
		panic("refusal without a cause")
	}
	return Close
}

func (s *scriptSource) Serve(f codec.Frame, raw []byte) Step {
	s.calls = append(s.calls, fmt.Sprintf("serve(%s,%d)", f.Request, len(raw)))
	s.buf = s.buf[len(raw):]
	return s.serveAs
}

// The one decode loop every transport runs (reactor plain, reactor TLS
// and std differ only in their Source): what it does with each shape of
// inbound bytes, draining or not.
func TestDecode(t *testing.T) {
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
		serveAs  Step
		ahead    bool
		want     string
		end      Step
		phase    Phase
	}{
		{"nothing buffered", nil, nil, false, Continue, false, "more(empty,11)", Pause, Idle},
		{"nothing buffered, draining", nil, nil, true, Continue, false, "", Close, Idle},
		{"part of a header", f10[:5], nil, false, Continue, false, "more(partial,6)", Pause, Reading},
		{"part of a header, draining", f10[:5], nil, true, Continue, false, "", Close, Reading},
		{"header, part of the payload", f10[:20], nil, false, Continue, false, "more(partial,5)", Pause, Reading},
		{"a frame", f10, nil, false, Continue, false, "serve(echo,25) more(empty,11)", Pause, Idle},
		{"two frames and a part", cat(f10, f10, f10[:3]), nil, false, Continue, false,
			"serve(echo,25) serve(echo,25) more(partial,8)", Pause, Reading},
		// A frame handed to another goroutine stops the loop; what follows
		// it waits.
		{"handed off", cat(f10, f10), nil, false, Pause, false, "serve(echo,25)", Pause, Idle},
		// Whole frames already read are answered while draining.
		{"a frame, draining", f10, nil, true, Continue, false, "serve(echo,25)", Close, Idle},
		{"two frames, draining", cat(f10, f10), nil, true, Continue, false, "serve(echo,25) serve(echo,25)", Close, Idle},
		{"a trickle (blocking reads)", f10[:4], [][]byte{f10[4:12], f10[12:]}, false, Continue, false,
			"more(partial,7) more(partial,3) serve(echo,25) more(empty,11)", Pause, Idle},
		// Refused from its header and request text, before the payload.
		{"over the payload limit", big[:codec.HeaderLen+4], nil, false, Continue, false, "refuse", Close, Idle},
		{"refused after a frame", cat(f10, big[:codec.HeaderLen+4]), nil, false, Continue, false, "serve(echo,25) refuse", Close, Idle},
		// Draining, nothing buffered: what the peer sent, still unread, is
		// read and its whole frames are answered.
		{"unread frames, draining", nil, [][]byte{cat(f10, f10)}, true, Continue, true,
			"more(empty,11) serve(echo,25) serve(echo,25)", Close, Idle},
		{"unread part of a frame, draining", nil, [][]byte{f10[:7]}, true, Continue, true,
			"more(empty,11)", Close, Reading},
		{"unread frames in two reads, draining", nil, [][]byte{f10, f10}, true, Continue, true,
			"more(empty,11) serve(echo,25) more(empty,11) serve(echo,25)", Close, Idle},
		// Draining with a frame begun: its rest, all arrived and unread,
		// is read and the frame answered; a rest still arriving is not
		// waited for.
		{"rest of a frame unread, draining", f10[:20], [][]byte{f10[20:]}, true, Continue, true,
			"more(partial,5) serve(echo,25)", Close, Idle},
		{"part of the rest unread, draining", f10[:20], [][]byte{f10[20:22]}, true, Continue, true,
			"", Close, Reading},
	}
	for _, c := range cases {
		src := &scriptSource{buf: c.buf, arrivals: c.arrivals, serveAs: c.serveAs, ahead: c.ahead}
		var draining atomic.Bool
		draining.Store(c.draining)
		var l State
		l.Enter(Idle, 1)
		end := Decode(parser{max: 1000}, src, &l, &draining, func() int64 { return 2 })
		if got := strings.Join(src.calls, " "); got != c.want || end != c.end || l.Phase() != c.phase {
			t.Errorf("%s: %q, step %d, phase %v; want %q, step %d, phase %v", c.name, got, end, l.Phase(), c.want, c.end, c.phase)
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
