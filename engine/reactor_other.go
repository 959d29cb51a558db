//go:build !(linux || darwin || freebsd || netbsd || openbsd || dragonfly)

package engine

import (
	"errors"
	"fmt"
)

// reactorAvailable reports whether this platform has the reactor engine:
// gnet runs on Linux (epoll) and the BSDs and macOS (kqueue) only.
const reactorAvailable = false

// errNoReactor is the error a reactor configuration gets here.
var errNoReactor = errors.New("the reactor engine needs Linux, macOS or a BSD; use Engine: Std")

func newReactorTransport(*Server) (transport, error) {
	return nil, fmt.Errorf("%w: %w", ErrConfig, errNoReactor)
}

// rconn and reactorTransport are the reactor's; they do not exist here.
type (
	rconn            struct{}
	reactorTransport struct{}
)

// answerReactor and run are never called: there are no reactor exchanges
// here.
func (x *exchange) answerReactor(result) {}
func (x *exchange) run()                 {}
