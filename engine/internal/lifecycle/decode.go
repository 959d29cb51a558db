package lifecycle

import (
	"sync/atomic"

	"github.com/petrel-rpc/petrel/codec"
)

// Verdict is what the bytes at the front of a connection's inbound bytes
// amount to.
type Verdict int

// The verdicts.
const (
	Empty   Verdict = iota // nothing buffered
	Partial                // a frame has begun; more bytes are needed
	Whole                  // a whole frame
	Refuse                 // refuse it (e.g. 402) from its header and request text
)

// Decoder decodes the front of a connection's inbound bytes. n is the
// length of a whole frame f; need, how many more bytes a partial one
// needs; err, why a frame is refused.
type Decoder interface {
	Next(buf []byte) (v Verdict, f codec.Frame, n, need int, err error)
}

// Step is what the decode loop does next.
type Step uint8

// The steps.
const (
	Continue Step = iota // decode the next frame
	Pause                // stop decoding; the connection stays open (more bytes will come, or another goroutine has it)
	Close                // close the connection
)

// Source is a transport's side of the decode loop: where its inbound
// bytes are (gnet's buffer, TLS plaintext, the std read buffer) and how
// it gets more, refuses and answers. The loop decides; the source only
// moves bytes.
type Source interface {
	// Inbound returns the bytes received and not yet served, from the
	// start of a frame.
	Inbound() []byte
	// More is called when Inbound (buf) holds no whole frame (v is Empty
	// or Partial; a begun frame lacks need bytes), once the lifecycle has
	// entered idle or reading: read more and go on (Continue), or wait
	// for the next event (Pause).
	More(v Verdict, buf []byte, need int) Step
	// Refuse answers the refusal (err) of the frame whose bytes so far
	// are buf; the connection closes after it.
	Refuse(buf []byte, err error) Step
	// Serve answers frame f, whose bytes raw are at the front of Inbound,
	// and drops them from it, or hands f to another goroutine (Pause).
	Serve(f codec.Frame, raw []byte) Step
	// ReadAhead is asked when the server drains and Inbound holds no
	// whole frame: it reports whether bytes the peer sent wait unread
	// (in the kernel), to be read by More, so that the whole frames among
	// them are answered before the close: any bytes when no frame is
	// begun (need is 0), at least need, the rest of the frame begun,
	// otherwise (a frame whose bytes have all arrived is answered; one
	// still arriving is closed). A peer that keeps sending frames keeps
	// being answered, within the drain's bound, as on a transport that
	// reads everything as it arrives.
	ReadAhead(need int) bool
}

// Decode is the decode loop, the same for every transport: it serves the
// frames src holds, one at a time, until src must wait or the connection
// must close. For a connection waiting for bytes it takes the lifecycle's
// decision ([State.Await]: close at once if draining, unless src has
// bytes to read ahead) at clock's time before it asks src for more.
func Decode(d Decoder, src Source, st *State, draining *atomic.Bool, clock func() int64) Step {
	for {
		buf := src.Inbound()
		v, f, n, need, err := d.Next(buf)
		var s Step
		switch v {
		case Refuse:
			return src.Refuse(buf, err)
		case Empty, Partial:
			ahead := need
			if v == Empty {
				ahead = 0
			}
			if st.Await(v, draining.Load(), clock) && !src.ReadAhead(ahead) {
				return Close
			}
			s = src.More(v, buf, need)
		default:
			s = src.Serve(f, buf[:n])
		}
		if s != Continue {
			return s
		}
	}
}
