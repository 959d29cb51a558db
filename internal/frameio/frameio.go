// Package frameio reads Petrel frames from a byte stream into one reused
// buffer, decoding them in place with the codec. The load generator, the
// bench floors, the soak and the tests share it.
package frameio

import (
	"io"

	"github.com/petrel-rpc/petrel/codec"
)

// Reader reads frames from a stream. The zero value is ready to use. It is
// not safe for concurrent use.
type Reader struct {
	buf        []byte
	start, end int // buf[start:end] is read and not yet parsed
	need       int // bytes missing when the last Next stopped inside a frame
}

// Next reads until a whole frame is buffered and returns it. The frame's
// slices alias the Reader's buffer until the next call. Next does not
// verify the MAC. A header over opts' limit gives the codec's error; a read
// error comes back as it is: [Reader.Buffered] then tells whether the
// stream stopped inside a frame.
func (r *Reader) Next(src io.Reader, opts codec.Options) (codec.Frame, error) {
	for {
		f, n, need, err := codec.Parse(r.buf[r.start:r.end], opts)
		if err != nil {
			return codec.Frame{}, err
		}
		if n > 0 {
			r.start += n
			if r.start == r.end {
				r.start, r.end = 0, 0 // drained: the next frame starts at 0
			}
			r.need = 0
			return f, nil
		}
		r.need = need
		// Make room for at least need more bytes.
		if r.start > 0 && r.end+need > len(r.buf) {
			r.end = copy(r.buf, r.buf[r.start:r.end])
			r.start = 0
		}
		if r.end+need > len(r.buf) {
			nb := make([]byte, max(2*len(r.buf), r.end+need, 4096))
			r.end = copy(nb, r.buf[r.start:r.end])
			r.start = 0
			r.buf = nb
		}
		m, err := src.Read(r.buf[r.end:])
		r.end += m
		if err != nil && m == 0 {
			return codec.Frame{}, err
		}
	}
}

// Buffered returns the bytes read but not yet returned as a frame: after a
// read error, nonzero means the stream stopped inside a frame.
func (r *Reader) Buffered() int { return r.end - r.start }

// Missing returns how many more bytes the frame in progress needed when
// Next last stopped inside one.
func (r *Reader) Missing() int { return r.need }
