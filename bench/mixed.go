package bench

import "github.com/petrel-rpc/petrel/engine"

// mixedUnavailable is empty since engine.Config has HandlerOptions: the
// reactor-mixed system runs (in the scenarios that name it).
const mixedUnavailable = ""

// serveMixed serves the reactor engine with handlers on the worker pool,
// except echo, registered NonBlocking ([engine.HandlerOptions]): it runs on
// the event loop, paying no hand-off, while sleep blocks on a worker.
var serveMixed = serveEngineWith(engine.Reactor, false, func(c *engine.Config) {
	c.HandlerOptions = map[string]engine.HandlerOptions{reqEcho: {NonBlocking: true}}
})
