package engine

import (
	"errors"
	"fmt"
)

// Errors returned by the engine.
var (
	// ErrServerClosed is what [Server.Err] and [Server.Wait] report after
	// [Server.Shutdown] or [Server.Close],
	ErrServerClosed = errors.New("petrel: server closed")
	// ErrConfig wraps every configuration error from [Listen].
	ErrConfig = errors.New("petrel: invalid config")
	// ErrBadName: a handler name that is empty, longer than 255 bytes, or
	// reserved (PROTOCHECK; names beginning "petrel." while
	// [Config.Introspection] is on), or a nil handler.
	ErrBadName = errors.New("petrel: invalid handler name")
	// ErrBadOptions: [HandlerOptions] that cannot be honoured (a negative
	// MaxConcurrent).
	ErrBadOptions = errors.New("petrel: invalid handler options")
	// ErrSignal is what [Server.Err] reports after a SIGINT or SIGTERM
	// shut the server down; it wraps ErrServerClosed.
	ErrSignal = fmt.Errorf("petrel: server closed by signal: %w", ErrServerClosed)
)

// ErrDrainCut is wrapped by what [Server.Shutdown] returns, and by
// [Server.Err], when a graceful shutdown did not finish: its context ended,
// [Server.Close] was called meanwhile, or a second signal arrived.
var ErrDrainCut = errors.New("petrel: graceful shutdown cut short")
