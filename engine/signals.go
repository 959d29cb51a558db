package engine

import (
	"context"
	"os"
	"os/signal"
	"sync"
	"syscall"
)

// sigState is the process's one signal watcher, shared by every server that
// did not set IgnoreSignals. It runs only while such a server exists.
var sigState struct {
	mu      sync.Mutex           // guards the fields below
	servers map[*Server]struct{} // servers to shut down on a signal
	ch      chan os.Signal       // nil while no watcher runs
	stop    chan struct{}        // closes the watcher
}

func registerSignals(s *Server) {
	sigState.mu.Lock()
	defer sigState.mu.Unlock()
	if sigState.servers == nil {
		sigState.servers = map[*Server]struct{}{}
	}
	sigState.servers[s] = struct{}{}
	if sigState.ch == nil {
		ch := make(chan os.Signal, 2)
		stop := make(chan struct{})
		sigState.ch, sigState.stop = ch, stop
		signal.Notify(ch, syscall.SIGINT, syscall.SIGTERM)
		go watchSignals(ch, stop)
	}
}

func unregisterSignals(s *Server) {
	sigState.mu.Lock()
	if _, ok := sigState.servers[s]; !ok {
		sigState.mu.Unlock()
		return
	}
	delete(sigState.servers, s)
	var stop chan struct{}
	if len(sigState.servers) == 0 && sigState.ch != nil {
		signal.Stop(sigState.ch)
		stop = sigState.stop
		sigState.ch, sigState.stop = nil, nil
	}
	sigState.mu.Unlock()
	if stop != nil {
		close(stop)
		// The watcher may be the caller (shutting servers down after a
		// signal); it exits on its own once this returns.
	}
}

// watchSignals is the one goroutine that receives signals: the first
// starts a graceful shutdown of every server, bounded by its
// ShutdownTimeout; the second closes them all at once.
func watchSignals(ch chan os.Signal, stop chan struct{}) {
	count := 0
	for {
		select {
		case <-stop:
			return
		case sig := <-ch:
			count++
			sigState.mu.Lock()
			servers := make([]*Server, 0, len(sigState.servers))
			for s := range sigState.servers {
				servers = append(servers, s)
			}
			sigState.mu.Unlock()
			for _, s := range servers {
				if count == 1 {
					s.log.Warn("petrel: signal received, shutting down", "signal", sig.String(), "addr", s.AddrString(),
						"timeout", s.cfg.ShutdownTimeout)
					go func() {
						ctx, cancel := context.WithTimeout(context.Background(), s.cfg.ShutdownTimeout)
						defer cancel()
						_ = s.stop(ctx, ErrSignal)
					}()
				} else {
					s.log.Warn("petrel: second signal received, closing now", "signal", sig.String(), "addr", s.AddrString())
					go s.Close()
				}
			}
		}
	}
}
