// Package petrelotel traces the requests of a Petrel server with
// OpenTelemetry.
//
// [Middleware] starts a server span for each request, named after the
// request, and ends it when the handler returns:
//
//	srv, err := engine.Listen(engine.Config{
//		Addr:       addr,
//		Handlers:   handlers,
//		Middleware: []engine.Middleware{petrelotel.Middleware(tp)},
//	})
//
// Handlers find the span in their context (trace.SpanFromContext) and can
// start child spans from it. Petrel frames carry no metadata, so no trace
// context arrives from the client: each request's span is the root of its
// own trace.
//
// Where the middleware sits in [engine.Config.Middleware] decides what its
// spans cover: first, they cover every other middleware too; last, only
// the handler.
//
// The package is separate from the engine so that only programs that
// import it depend on OpenTelemetry.
package petrelotel
