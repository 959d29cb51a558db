package engine

import (
	"runtime"
	"strconv"
	"sync/atomic"

	"github.com/petrel-rpc/petrel/codec"
)

// Stats is a snapshot of a server's counters.
type Stats struct {
	OpenConns  int64             // connections open now
	TotalConns uint64            // connections accepted since start
	Refused    uint64            // connections refused (max connections, shutdown, handshake limit)
	Requests   uint64            // frames answered
	BytesIn    uint64            // bytes of frames received
	BytesOut   uint64            // bytes of frames sent
	ByStatus   map[string]uint64 // answers by status code
	Abandoned  int64             // handlers still running after their timeout answered for them
	Busy       uint64            // requests answered busy without running (queue timeout, MaxConcurrent, MaxAbandoned)
	Evicted    uint64            // connections closed (or paused, std) for holding too much inbound: the MaxBuffered budget, or a pipelined backlog over the next frame plus 256 KiB
	Buffered   int64             // inbound bytes held now for partial and pipelined frames (MaxBuffered's measure)
	TimedOut   uint64            // connections closed by a read, idle, write or handshake timeout
	Sessions   [2]uint64         // sessions by negotiated protocol version (index 0 or 1)
}

// trackedStatuses are counted individually; everything else lands in
// "other".
var trackedStatuses = [...]codec.Status{200, 400, 401, 402, 497, 498, 499, 500, 501, 502, 503, 504}

func statusSlot(s codec.Status) int {
	for i, t := range trackedStatuses {
		if t == s {
			return i
		}
	}
	return len(trackedStatuses)
}

// statShard is one cache-line-padded set of counters. Connections are
// spread over shards by id, so counting costs an uncontended atomic add.
type statShard struct {
	requests, bytesIn, bytesOut atomic.Uint64
	byStatus                    [len(trackedStatuses) + 1]atomic.Uint64
	_                           [64]byte
}

// counters holds a server's statistics.
type counters struct {
	open      atomic.Int64
	total     atomic.Uint64
	refused   atomic.Uint64
	abandoned atomic.Int64
	busy      atomic.Uint64
	evicted   atomic.Uint64
	timedOut  atomic.Uint64
	sessions  [2]atomic.Uint64
	shards    []statShard
}

func newCounters() *counters {
	return &counters{shards: make([]statShard, 4*runtime.GOMAXPROCS(0))}
}

func (c *counters) shard(id uint64) *statShard { return &c.shards[id%uint64(len(c.shards))] }

// answered records one answer on connection id.
func (c *counters) answered(id uint64, st codec.Status, in, out int) {
	sh := c.shard(id)
	sh.requests.Add(1)
	sh.bytesIn.Add(uint64(in))
	sh.bytesOut.Add(uint64(out))
	sh.byStatus[statusSlot(st)].Add(1)
}

func (c *counters) snapshot() Stats {
	s := Stats{
		OpenConns:  c.open.Load(),
		TotalConns: c.total.Load(),
		Refused:    c.refused.Load(),
		ByStatus:   map[string]uint64{},
		Abandoned:  c.abandoned.Load(),
		Busy:       c.busy.Load(),
		Evicted:    c.evicted.Load(),
		TimedOut:   c.timedOut.Load(),
		Sessions:   [2]uint64{c.sessions[0].Load(), c.sessions[1].Load()},
	}
	for i := range c.shards {
		sh := &c.shards[i]
		s.Requests += sh.requests.Load()
		s.BytesIn += sh.bytesIn.Load()
		s.BytesOut += sh.bytesOut.Load()
		for j := range sh.byStatus {
			n := sh.byStatus[j].Load()
			if n == 0 {
				continue
			}
			key := "other"
			if j < len(trackedStatuses) {
				key = strconv.Itoa(int(trackedStatuses[j]))
			}
			s.ByStatus[key] += n
		}
	}
	return s
}
