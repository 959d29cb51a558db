package bench

import (
	"context"
	"fmt"
	"net"
	"net/rpc"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/mem"
)

// ---- net/rpc ----

// RPCEcho is the net/rpc service of the net-rpc system. It is exported only
// because net/rpc requires exported types.
type RPCEcho struct{ slow time.Duration }

// Echo answers with its argument.
func (e *RPCEcho) Echo(args []byte, reply *[]byte) error {
	*reply = args
	return nil
}

// Sleep blocks for the slow delay, then echoes.
func (e *RPCEcho) Sleep(args []byte, reply *[]byte) error {
	time.Sleep(e.slow)
	*reply = args
	return nil
}

func serveNetRPC(_ context.Context, c ServeConfig) (Server, error) {
	srv := rpc.NewServer()
	if err := srv.RegisterName("Echo", &RPCEcho{slow: c.Slow}); err != nil {
		return nil, err
	}
	ln, err := listen(c.Addr, c.TLS)
	if err != nil {
		return nil, err
	}
	return startConnServer(ln, func(c net.Conn) { srv.ServeConn(c) }), nil
}

type netRPCCaller struct {
	conn net.Conn
	c    *rpc.Client
}

func dialNetRPC(ctx context.Context, d dialConfig) (caller, error) {
	conn, err := d.dial(ctx)
	if err != nil {
		return nil, err
	}
	return &netRPCCaller{conn: conn, c: rpc.NewClient(conn)}, nil
}

func (n *netRPCCaller) call(req string, payload []byte) ([]byte, error) {
	method := "Echo.Echo"
	if req == reqSleep {
		method = "Echo.Sleep"
	}
	var reply []byte
	if err := n.c.Call(method, payload, &reply); err != nil {
		return nil, err
	}
	return reply, nil
}

func (n *netRPCCaller) setDeadline(t time.Time) { n.conn.SetDeadline(t) }

func (n *netRPCCaller) close() error { return n.c.Close() }

// ---- gRPC ----

// rawCodec is a gRPC codec for *[]byte messages, so no protoc is needed.
type rawCodec struct{}

func (rawCodec) Name() string { return "petrel-bench-raw" }

func (rawCodec) Marshal(v any) (mem.BufferSlice, error) {
	b, ok := v.(*[]byte)
	if !ok {
		return nil, fmt.Errorf("raw codec: cannot marshal %T", v)
	}
	return mem.BufferSlice{mem.SliceBuffer(*b)}, nil
}

func (rawCodec) Unmarshal(data mem.BufferSlice, v any) error {
	b, ok := v.(*[]byte)
	if !ok {
		return fmt.Errorf("raw codec: cannot unmarshal into %T", v)
	}
	*b = data.Materialize()
	return nil
}

const grpcService = "petrelbench.Echo"

func grpcDesc(slow time.Duration) *grpc.ServiceDesc {
	handler := func(sleep bool) grpc.MethodHandler {
		return func(_ any, ctx context.Context, dec func(any) error, _ grpc.UnaryServerInterceptor) (any, error) {
			var in []byte
			if err := dec(&in); err != nil {
				return nil, err
			}
			if sleep {
				time.Sleep(slow)
			}
			return &in, nil
		}
	}
	return &grpc.ServiceDesc{
		ServiceName: grpcService,
		HandlerType: (*any)(nil),
		Methods: []grpc.MethodDesc{
			{MethodName: "Echo", Handler: handler(false)},
			{MethodName: "Sleep", Handler: handler(true)},
		},
	}
}

type grpcServer struct {
	ln  net.Listener
	srv *grpc.Server
	wg  sync.WaitGroup
}

func serveGRPC(_ context.Context, c ServeConfig) (Server, error) {
	ln, err := listen(c.Addr, nil)
	if err != nil {
		return nil, err
	}
	opts := []grpc.ServerOption{grpc.ForceServerCodecV2(rawCodec{}), grpc.MaxRecvMsgSize(8 << 20)}
	if c.TLS != nil {
		opts = append(opts, grpc.Creds(credentials.NewTLS(c.TLS)))
	}
	s := &grpcServer{ln: ln, srv: grpc.NewServer(opts...)}
	s.srv.RegisterService(grpcDesc(c.Slow), struct{}{})
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		s.srv.Serve(ln)
	}()
	return s, nil
}

func (s *grpcServer) Addr() string { return lnAddr(s.ln) }

func (s *grpcServer) Close() error {
	s.srv.Stop()
	s.wg.Wait()
	return nil
}

type grpcCaller struct {
	cc     *grpc.ClientConn
	ctx    context.Context // carries the deadline of every call
	cancel context.CancelFunc
}

func dialGRPC(ctx context.Context, d dialConfig) (caller, error) {
	network, a := splitAddr(d.addr)
	target := "passthrough:///" + a
	if network == "unix" {
		target = "unix://" + a
	}
	creds := insecure.NewCredentials()
	if d.tls != nil {
		creds = credentials.NewTLS(d.tls)
	}
	cc, err := grpc.NewClient(target,
		grpc.WithTransportCredentials(creds),
		grpc.WithDefaultCallOptions(grpc.ForceCodecV2(rawCodec{}), grpc.MaxCallRecvMsgSize(8<<20)))
	if err != nil {
		return nil, err
	}
	g := &grpcCaller{cc: cc, ctx: context.Background(), cancel: func() {}}
	// Connect now (the client is lazy), with one echo as the handshake.
	p := []byte{0}
	var out []byte
	if err := cc.Invoke(ctx, "/"+grpcService+"/Echo", &p, &out); err != nil {
		cc.Close()
		return nil, err
	}
	return g, nil
}

func (g *grpcCaller) call(req string, payload []byte) ([]byte, error) {
	method := "/" + grpcService + "/Echo"
	if req == reqSleep {
		method = "/" + grpcService + "/Sleep"
	}
	var out []byte
	if err := g.cc.Invoke(g.ctx, method, &payload, &out); err != nil {
		return nil, err
	}
	return out, nil
}

func (g *grpcCaller) setDeadline(t time.Time) {
	g.cancel()
	if t.IsZero() {
		g.ctx, g.cancel = context.Background(), func() {}
		return
	}
	g.ctx, g.cancel = context.WithDeadline(context.Background(), t)
}

func (g *grpcCaller) close() error {
	g.cancel()
	return g.cc.Close()
}
