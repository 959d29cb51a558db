//go:build linux || darwin || freebsd || netbsd || openbsd || dragonfly

package engine

import (
	"reflect"
	"sync"
	"unsafe"

	"github.com/panjf2000/gnet/v2"
	"github.com/panjf2000/gnet/v2/pkg/buffer/elastic"
)

// gnet closes a connection when its peer half-closes, and what it still
// holds of an answer is then written only as far as the socket takes it at
// once: the rest is lost. gnet has no call that hands those bytes back, so
// OnClose takes them from the connection's outbound buffer (an
// elastic.Buffer, a field of gnet's connection) for the duplicate
// descriptor to finish. docs/design.md explains why; TestOutboundReachable
// fails if a gnet upgrade moves the field, and without it a torn answer
// ends in a reset, as before.

var (
	outboundOnce   sync.Once
	outboundType   reflect.Type // gnet's connection type
	outboundOffset uintptr      // of the field in it; 0 when it cannot be reached
)

// outboundOf returns gnet's outbound buffer of c, or nil when this gnet
// keeps it elsewhere. Loop goroutine.
func outboundOf(c gnet.Conn) *elastic.Buffer {
	t := reflect.TypeOf(c)
	outboundOnce.Do(func() {
		if t.Kind() != reflect.Pointer || t.Elem().Kind() != reflect.Struct {
			return
		}
		f, ok := t.Elem().FieldByName("outboundBuffer")
		if ok && f.Type == reflect.TypeOf(elastic.Buffer{}) && f.Offset > 0 {
			outboundType, outboundOffset = t, f.Offset
		}
	})
	if outboundOffset == 0 || t != outboundType {
		return nil
	}
	return (*elastic.Buffer)(unsafe.Add(reflect.ValueOf(c).UnsafePointer(), outboundOffset))
}

// takeOutbound removes what gnet holds to send on c and returns it, or
// reports false when gnet's buffer cannot be reached. Loop goroutine,
// in OnClose (gnet then has nothing left to write before it closes).
func takeOutbound(c gnet.Conn) ([]byte, bool) {
	ob := outboundOf(c)
	if ob == nil || ob.Buffered() != c.OutboundBuffered() {
		return nil, false
	}
	out := make([]byte, ob.Buffered())
	n, _ := ob.Read(out)
	return out[:n], n == len(out)
}
