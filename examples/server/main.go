// Command server is the Petrel server users try first: an echo server with
// a few demonstration handlers, on either engine.
//
//	go run ./examples/server -addr ADDR [-engine reactor|std] [-inline]
//	    [-hmac KEY | -hmac-file F] [-min-protocol 0|1] [-max-payload N]
//	    [-max-conns N] [-max-handshakes N] [-max-buffered BYTES]
//	    [-read-timeout D] [-idle-timeout D] [-write-timeout D]
//	    [-handler-timeout D] [-queue-timeout D] [-shutdown-timeout D]
//	    [-nonblocking NAMES] [-introspection]
//	    [-tls-cert F -tls-key F [-tls-client-ca F]] [-debug HOST:PORT] [-v]
//
// Handlers: echo (payload back), time (RFC 3339 time now), fail (an error,
// answered 500), panic (a panic, answered 500), sleep (sleeps for the Go
// duration in the payload, then 200), upload (up to 64 MiB: answers the
// payload's length and SHA-256 as "LEN HEX").
//
// -hmac KEY puts the key on the command line, where other local users can
// read it (ps, shell history); -hmac-file F reads it from a file (one
// trailing newline is dropped).
//
// Once ready it prints exactly one line, "listening on ADDR", to stdout. On
// SIGINT or SIGTERM it shuts down gracefully (bounded by
// -shutdown-timeout) and exits 0; a second signal closes at once and the
// exit status is 1 when that cut the drain short.
package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"expvar"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	_ "net/http/pprof"
	"os"
	"strings"
	"time"

	"github.com/petrel-rpc/petrel/engine"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "server:", err)
		os.Exit(1)
	}
}

func run() error {
	var (
		addr        = flag.String("addr", "127.0.0.1:7777", "listen address: host:port, tcp://host:port or unix:///path")
		engineKind  = flag.String("engine", "reactor", "engine: reactor or std")
		inline      = flag.Bool("inline", false, "run handlers on the event loop (reactor engine)")
		hmacKey     = flag.String("hmac", "", "HMAC key: verify requests and sign answers (visible to other local users; prefer -hmac-file)")
		hmacFile    = flag.String("hmac-file", "", "read the HMAC key from this file")
		minProtocol = flag.Uint("min-protocol", 0, "lowest protocol version served: 0 or 1")
		maxHS       = flag.Int("max-handshakes", 0, "TLS handshakes in progress at once, reactor engine (0: 1024)")
		maxBuffered = flag.Int64("max-buffered", 0, "bytes held for partial and pipelined frames across all connections (0: 64 MiB, or twice the largest payload limit + 1 MiB: 129 MiB with upload)")
		writeTO     = flag.Duration("write-timeout", 0, "close a connection whose answer has not moved for this long (0: 30s)")
		handlerTO   = flag.Duration("handler-timeout", 0, "answer a handler as timed out after this long (0: none)")
		queueTO     = flag.Duration("queue-timeout", 0, "answer busy a request that waits this long for a worker (0: 1s)")
		shutdownTO  = flag.Duration("shutdown-timeout", 0, "bound on the graceful drain at SIGINT/SIGTERM (0: 30s)")
		nonBlocking = flag.String("nonblocking", "", "comma-separated handler names to run on the event loop (NonBlocking)")
		introspect  = flag.Bool("introspection", false, "answer the built-in petrel.handlers, petrel.health and petrel.stats")
		maxPayload  = flag.Uint("max-payload", 0, "payload limit in bytes (0: 4 MiB)")
		maxConns    = flag.Int("max-conns", 0, "maximum concurrent connections (0: no limit)")
		readTimeout = flag.Duration("read-timeout", 0, "time allowed for a partly received frame (0: 30s)")
		idleTimeout = flag.Duration("idle-timeout", 0, "idle connection timeout (0: 5m)")
		tlsCert     = flag.String("tls-cert", "", "TLS certificate file (PEM)")
		tlsKey      = flag.String("tls-key", "", "TLS key file (PEM)")
		tlsClientCA = flag.String("tls-client-ca", "", "require client certificates signed by this CA (PEM)")
		debugAddr   = flag.String("debug", "", "serve expvar and pprof on this loopback HOST:PORT")
		verbose     = flag.Bool("v", false, "log connections and other events at debug level")
	)
	flag.Parse()
	if flag.NArg() > 0 {
		return fmt.Errorf("unexpected arguments: %v", flag.Args())
	}
	if *maxPayload > 0xFFFFFFFF {
		return fmt.Errorf("-max-payload %d is over 4 GiB", *maxPayload)
	}
	if *minProtocol > 1 {
		return fmt.Errorf("-min-protocol %d: must be 0 or 1", *minProtocol)
	}
	level := slog.LevelWarn
	if *verbose {
		level = slog.LevelDebug
	}
	logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	cfg := engine.Config{
		Addr:            *addr,
		Engine:          engine.Kind(*engineKind),
		Inline:          *inline,
		MaxPayload:      uint32(*maxPayload),
		MaxConns:        *maxConns,
		ReadTimeout:     *readTimeout,
		IdleTimeout:     *idleTimeout,
		WriteTimeout:    *writeTO,
		HandlerTimeout:  *handlerTO,
		QueueTimeout:    *queueTO,
		ShutdownTimeout: *shutdownTO,
		MaxHandshakes:   *maxHS,
		MaxBuffered:     *maxBuffered,
		MinProtocol:     uint8(*minProtocol),
		Introspection:   *introspect,
		HandlerOptions: map[string]engine.HandlerOptions{
			"upload": {MaxPayload: 64 << 20},
		},
		Logger: logger,
		Handlers: map[string]engine.Handler{
			"echo":   echo,
			"time":   now,
			"fail":   fail,
			"panic":  panicky,
			"sleep":  sleep,
			"upload": upload,
		},
	}
	for _, name := range strings.Split(*nonBlocking, ",") {
		if name = strings.TrimSpace(name); name == "" {
			continue
		}
		if _, ok := cfg.Handlers[name]; !ok {
			return fmt.Errorf("-nonblocking: no handler %q", name)
		}
		o := cfg.HandlerOptions[name]
		o.NonBlocking = true
		cfg.HandlerOptions[name] = o
	}
	switch {
	case *hmacKey != "" && *hmacFile != "":
		return errors.New("-hmac and -hmac-file are exclusive")
	case *hmacFile != "":
		key, err := os.ReadFile(*hmacFile)
		if err != nil {
			return fmt.Errorf("-hmac-file: %w", err)
		}
		key = bytes.TrimSuffix(key, []byte("\n"))
		if len(key) == 0 {
			return fmt.Errorf("-hmac-file %s: empty key", *hmacFile)
		}
		cfg.HMACKey = key
	case *hmacKey != "":
		cfg.HMACKey = []byte(*hmacKey)
	}
	if *tlsCert != "" || *tlsKey != "" {
		tc, err := tlsConfig(*tlsCert, *tlsKey, *tlsClientCA)
		if err != nil {
			return err
		}
		cfg.TLS = tc
	} else if *tlsClientCA != "" {
		return errors.New("-tls-client-ca needs -tls-cert and -tls-key")
	}
	srv, err := engine.Listen(cfg)
	if err != nil {
		return err
	}
	if *debugAddr != "" {
		if err := serveDebug(*debugAddr, srv); err != nil {
			srv.Close()
			return err
		}
	}
	fmt.Printf("listening on %s\n", srv.AddrString())
	err = srv.Wait()
	if errors.Is(err, engine.ErrDrainCut) {
		return fmt.Errorf("closed before the drain finished: %w", err)
	}
	if errors.Is(err, engine.ErrServerClosed) {
		return nil
	}
	return err
}

// upload accepts up to 64 MiB (its own MaxPayload) and answers the
// payload's length and SHA-256 as "LEN HEX".
func upload(_ context.Context, req *engine.Request) (uint16, []byte, error) {
	sum := sha256.Sum256(req.Payload)
	return 200, fmt.Appendf(nil, "%d %x", len(req.Payload), sum), nil
}

// logger is the server's logger; with -v the sleep handler reports each
// start at debug level (tests wait for it before signalling).
var logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))

func echo(_ context.Context, req *engine.Request) (uint16, []byte, error) {
	return 200, req.Payload, nil
}

func now(context.Context, *engine.Request) (uint16, []byte, error) {
	return 200, []byte(time.Now().Format(time.RFC3339)), nil
}

func fail(context.Context, *engine.Request) (uint16, []byte, error) {
	return 0, nil, errors.New("fail handler: failing as asked")
}

func panicky(context.Context, *engine.Request) (uint16, []byte, error) {
	panic("panic handler: panicking as asked")
}

func sleep(ctx context.Context, req *engine.Request) (uint16, []byte, error) {
	d, err := time.ParseDuration(string(req.Payload))
	if err != nil {
		return 0, nil, fmt.Errorf("sleep: %w", err)
	}
	logger.Debug("sleep handler started", "conn", req.Conn.ID, "duration", d)
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return 200, nil, nil
	case <-ctx.Done():
		return 0, nil, ctx.Err()
	}
}

func tlsConfig(certFile, keyFile, clientCA string) (*tls.Config, error) {
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("TLS key pair: %w", err)
	}
	tc := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	if clientCA != "" {
		pem, err := os.ReadFile(clientCA)
		if err != nil {
			return nil, fmt.Errorf("client CA: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("client CA %s: no certificates found", clientCA)
		}
		tc.ClientCAs = pool
		tc.ClientAuth = tls.RequireAndVerifyClientCert
	}
	return tc, nil
}

// serveDebug serves expvar (with the server's stats as "petrel") and pprof
// on a loopback address.
func serveDebug(addr string, srv *engine.Server) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("-debug: %w", err)
	}
	if ip := net.ParseIP(host); host != "localhost" && (ip == nil || !ip.IsLoopback()) {
		return fmt.Errorf("-debug %s: must be a loopback address", addr)
	}
	// The engine imports neither expvar nor net/http: publishing its
	// stats is this one line (expvar itself adds memstats and cmdline).
	expvar.Publish("petrel", expvar.Func(func() any { return srv.Stats() }))
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("-debug: %w", err)
	}
	go http.Serve(ln, nil)
	return nil
}
