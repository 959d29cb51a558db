package petrelotel

import (
	"context"
	"fmt"
	"net"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"

	"github.com/petrel-rpc/petrel/engine"
)

// ScopeName is the instrumentation scope of the tracer the middleware uses.
const ScopeName = "github.com/petrel-rpc/petrel/engine/petrelotel"

// Petrel's span attributes, beside the semantic conventions' rpc.system.name
// ("petrel"), rpc.method, network.transport, network.peer.address and
// network.peer.port.
const (
	// RequestKey is the request (handler) name.
	RequestKey = attribute.Key("petrel.request")
	// SeqKey is the request's sequence number.
	SeqKey = attribute.Key("petrel.seq")
	// ConnKey is the connection's ID, unique per server.
	ConnKey = attribute.Key("petrel.conn.id")
	// StatusKey is the answer's status: the handler's, or 500 when it
	// returned an error or panicked.
	StatusKey = attribute.Key("petrel.status")
	// RequestSizeKey is the request payload's size in bytes.
	RequestSizeKey = attribute.Key("petrel.request.size")
	// ResponseSizeKey is the answer payload's size in bytes.
	ResponseSizeKey = attribute.Key("petrel.response.size")
)

// systemPetrel is rpc.system.name for Petrel.
var systemPetrel = semconv.RPCSystemNameKey.String("petrel")

// Middleware returns middleware that traces every request with a tracer
// from tp (the global provider, otel.GetTracerProvider, when tp is nil).
//
// Each request gets a span of kind server named after the request, with
// the attributes listed at [RequestKey] and the peer's address. The span's
// status is Error, with the error recorded as an event, when the handler
// returns an error or panics (the server answers 500; a panic goes on to
// the server, which recovers it); it is Error also for statuses 500 to
// 1024, the protocol's server-side failures. Other statuses, and the
// application's own codes above 1024, whose meaning only the application
// knows, leave the status unset: read [StatusKey] to tell them apart.
//
// When the server's handler timeout passes, the server answers 503 at
// once; the span still ends when the handler returns, with what the
// handler returned.
func Middleware(tp trace.TracerProvider) engine.Middleware {
	if tp == nil {
		tp = otel.GetTracerProvider()
	}
	tracer := tp.Tracer(ScopeName, trace.WithSchemaURL(semconv.SchemaURL))
	return func(next engine.Handler) engine.Handler {
		return func(ctx context.Context, req *engine.Request) (status uint16, payload []byte, err error) {
			attrs := make([]attribute.KeyValue, 0, 10)
			attrs = append(attrs,
				systemPetrel,
				semconv.RPCMethod(req.Name),
				RequestKey.String(req.Name),
				SeqKey.Int64(int64(req.Seq)),
				RequestSizeKey.Int(len(req.Payload)),
			)
			if c := req.Conn; c != nil {
				attrs = append(attrs, ConnKey.Int64(int64(c.ID)))
				attrs = peerAttrs(attrs, c.RemoteAddr)
			}
			ctx, span := tracer.Start(ctx, req.Name,
				trace.WithSpanKind(trace.SpanKindServer),
				trace.WithAttributes(attrs...))
			panicking := true
			defer func() {
				if panicking {
					// A panic, or runtime.Goexit (r == nil), which goes on
					// by itself.
					r := recover()
					span.SetAttributes(StatusKey.Int(500))
					span.SetStatus(codes.Error, fmt.Sprint("panic: ", r))
					span.End()
					if r != nil {
						panic(r)
					}
				}
			}()

			status, payload, err = next(ctx, req)
			panicking = false

			code := int(status)
			if err != nil {
				code = 500
				span.RecordError(err)
				span.SetStatus(codes.Error, err.Error())
			} else if code >= 500 && code <= 1024 {
				span.SetStatus(codes.Error, fmt.Sprintf("status %d", code))
			}
			span.SetAttributes(StatusKey.Int(code), ResponseSizeKey.Int(len(payload)))
			span.End()
			return status, payload, err
		}
	}
}

// peerAttrs appends the network.* attributes describing the peer at a.
func peerAttrs(attrs []attribute.KeyValue, a net.Addr) []attribute.KeyValue {
	switch a := a.(type) {
	case *net.TCPAddr:
		attrs = append(attrs, semconv.NetworkTransportTCP,
			semconv.NetworkPeerAddress(a.IP.String()), semconv.NetworkPeerPort(a.Port))
	case *net.UnixAddr:
		attrs = append(attrs, semconv.NetworkTransportUnix)
		if a.Name != "" && a.Name != "@" { // client sockets are usually unnamed
			attrs = append(attrs, semconv.NetworkPeerAddress(a.Name))
		}
	case nil:
	default:
		attrs = append(attrs, semconv.NetworkPeerAddress(a.String()))
	}
	return attrs
}
