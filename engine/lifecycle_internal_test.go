package engine

import "testing"

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
