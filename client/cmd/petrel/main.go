// Command petrel calls a Petrel server from the command line, as redis-cli
// does for Redis, and loads it, as hey does for HTTP.
//
//	petrel [flags] call REQ [PAYLOAD]
//	petrel [flags] repl
//	petrel [flags] list
//	petrel [flags] health
//	petrel [flags] stats
//	petrel [flags] bench [-c CONNS] [-n N | -d DURATION] [-size N] REQ [PAYLOAD]
//
// call sends one request; PAYLOAD "-" reads the payload from stdin. The
// answer's payload is written to stdout as it is when stdout is not a
// terminal (a pipe or a file gets exactly the bytes sent); on a terminal a
// newline is added when the payload does not end with one.
//
// repl opens one connection and reads requests from stdin, one per line:
// the request text, then optionally a space and the payload (the rest of
// the line). Each answer's payload is written to stdout followed by a
// newline, as soon as it arrives; a non-2xx answer gives "status N: reason"
// on stderr. It stops at the end of input (exit status 0, or 1 if any
// answer was not 2xx), or when the connection closes (exit status 3).
//
// list, health and stats ask a server started with introspection on
// (engine.Config.Introspection, the server's -introspection flag) through
// its built-in requests petrel.handlers, petrel.health and petrel.stats.
// list prints a table of the registered handlers and their options ("-"
// for an option not set); health prints "ok" and exits 0 when the server
// answers 200, and otherwise "status N: reason" on stderr and exits 1 (a
// draining server answers 500 or 503); stats pretty-prints the server's
// counters (JSON). A server with introspection off answers 400, reported as
// "server has introspection off", exit status 1. An answer that is not the
// expected JSON is printed as it is.
//
// bench is a load generator: CONNS connections (default 10), each running
// one request at a time, send REQ with PAYLOAD ("-" reads stdin; -size N
// sends N random bytes instead) N times in total (default 1000) or, with
// -d, for DURATION. It prints the rate in requests per second, the p50,
// p90 and p99 latencies of the answers (from a log-linear histogram, within
// 1%) and their exact maximum, the count of answers by status, and the count of errors by
// kind with one example each. For REQ echo, every answer's payload is
// checked against the payload sent; a difference counts as an "echo
// mismatch" error. A connection that breaks is dialed again (a failed dial
// ends that connection's share of the run). While it runs, a progress line
// is kept on stderr when stderr is a terminal. SIGINT (or SIGTERM) stops
// the run: it prints what was measured so far. -timeout bounds each dial
// and each call; memory is bounded whatever N or DURATION.
//
// Flags:
//
//	-addr ADDR        server: host:port, tcp://host:port or unix:///path
//	                  (default $PETREL_ADDR)
//	-hmac-file F      HMAC key shared with the server: the contents of file
//	                  F, without one trailing newline
//	-hmac KEY         HMAC key shared with the server; visible to the other
//	                  users of this machine (ps, shell history): prefer
//	                  -hmac-file or $PETREL_HMAC_KEY
//	-protocol P       protocol version: auto, 0 or 1 (default auto: version
//	                  1, falling back to 0 for a classic server, except with
//	                  a key: a keyed client refuses that downgrade, and
//	                  -protocol 0 is needed for a keyed classic server)
//	-tls              use TLS (implied by the other -tls flags)
//	-tls-ca F         trust the certificate authority in PEM file F
//	-tls-cert F       client certificate (PEM), with -tls-key F
//	-tls-name NAME    server name to verify (default: the address's host)
//	-timeout D        bound on dialing and each call (default 10s; 0: none)
//	-max-payload N    answer and request payload limit in bytes (0: 4 MiB)
//	-v                for call, list, health and stats: print the answer's
//	                  status, seq and request, the protocol version and the
//	                  round-trip time to stderr
//
// The HMAC key is -hmac-file's, else -hmac's, else $PETREL_HMAC_KEY's;
// -hmac-file and -hmac together are a usage error.
//
// Exit status: 0 for a 2xx answer (bench: every answer 2xx and no error); 1
// for any other answer, with "status N: reason" on stderr (bench: some
// answer not 2xx, or some error); 2 for a usage error; 3 when no answer
// could be had (network, TLS, protocol check, timeout; bench: the first
// connections could not be dialed), with one line on stderr saying why.
package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/petrel-rpc/petrel/client"
	"github.com/petrel-rpc/petrel/codec"
)

// Exit statuses.
const (
	exitOK     = 0
	exitStatus = 1 // the server answered with a non-2xx status
	exitUsage  = 2
	exitFailed = 3 // no answer: network, TLS, protocol, timeout
)

const usage = `usage: petrel [flags] call REQ [PAYLOAD]   (PAYLOAD - reads stdin)
       petrel [flags] repl
       petrel [flags] list | health | stats
       petrel [flags] bench [-c CONNS] [-n N | -d DURATION] [-size N] REQ [PAYLOAD]
flags:
`

func main() {
	os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}

// usageError is a mistake on the command line.
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

// options are the settings shared by the subcommands.
type options struct {
	cfg     client.Config
	timeout time.Duration // bound on dialing and each call; 0: none
	verbose bool          // -v
}

func run(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("petrel", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var (
		addr       = fs.String("addr", os.Getenv("PETREL_ADDR"), "server `address`: host:port, tcp://host:port or unix:///path (default $PETREL_ADDR)")
		hmacFile   = fs.String("hmac-file", "", "HMAC key shared with the server: the contents of this `file`, without one trailing newline")
		hmacKey    = fs.String("hmac", "", "HMAC `key` shared with the server; visible to other local users (ps, shell history): prefer -hmac-file or $PETREL_HMAC_KEY")
		useTLS     = fs.Bool("tls", false, "use TLS (implied by the other -tls flags)")
		tlsCA      = fs.String("tls-ca", "", "trust the certificate authority in this PEM `file`")
		tlsCert    = fs.String("tls-cert", "", "client certificate PEM `file` (with -tls-key)")
		tlsKey     = fs.String("tls-key", "", "client key PEM `file` (with -tls-cert)")
		tlsName    = fs.String("tls-name", "", "server `name` to verify (default: the address's host)")
		timeout    = fs.Duration("timeout", 10*time.Second, "bound on dialing and each call (0: none)")
		maxPayload = fs.Uint("max-payload", 0, "payload limit in `bytes` (0: 4 MiB)")
		protocol   = fs.String("protocol", "auto", "protocol `version`: auto, 0 or 1 (auto: 1, falling back to 0 for a classic server unless a key is set)")
		verbose    = fs.Bool("v", false, "print the answer's status, seq, request, protocol version and round-trip time to stderr")
	)
	fs.Usage = func() {
		fmt.Fprint(stderr, usage)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK
		}
		return exitUsage
	}
	if fs.NArg() == 0 {
		fs.Usage()
		return exitUsage
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	o := options{
		cfg:     client.Config{Addr: *addr, DialTimeout: *timeout, MaxPayload: uint32(*maxPayload)},
		timeout: *timeout,
		verbose: *verbose,
	}
	err := func() error {
		if *addr == "" {
			return &usageError{"no server address: use -addr or set PETREL_ADDR"}
		}
		if *maxPayload > 0xFFFFFFFF {
			return &usageError{fmt.Sprintf("-max-payload %d is over 4 GiB", *maxPayload)}
		}
		if *timeout < 0 {
			return &usageError{"-timeout must not be negative"}
		}
		key, err := hmacKeyOf(set, *hmacFile, *hmacKey)
		if err != nil {
			return err
		}
		o.cfg.HMACKey = key
		switch *protocol {
		case "auto":
		case "0":
			o.cfg.Protocol = client.Protocol0
		case "1":
			o.cfg.Protocol = client.Protocol1
		default:
			return &usageError{fmt.Sprintf("-protocol %q: want auto, 0 or 1", *protocol)}
		}
		if *useTLS || *tlsCA != "" || *tlsCert != "" || *tlsKey != "" || *tlsName != "" {
			tc, err := tlsConfig(*tlsCA, *tlsCert, *tlsKey, *tlsName)
			if err != nil {
				return err
			}
			o.cfg.TLS = tc
		}
		return nil
	}()
	if err != nil {
		return fail(stderr, err)
	}

	rest := fs.Args()
	switch {
	case rest[0] == "call" && (len(rest) == 2 || len(rest) == 3):
		var payload []byte
		if len(rest) == 3 {
			if payload, err = readPayload(rest[2], stdin, o.cfg.MaxPayload); err != nil {
				return fail(stderr, err)
			}
		}
		return call(o, rest[1], payload, stdout, stderr)
	case rest[0] == "call":
		return fail(stderr, &usageError{"usage: petrel [flags] call REQ [PAYLOAD]"})
	case rest[0] == "repl" && len(rest) == 1:
		o.cfg.CallTimeout = o.timeout
		return repl(o.cfg, stdin, stdout, stderr)
	case (rest[0] == "list" || rest[0] == "health" || rest[0] == "stats") && len(rest) == 1:
		return introspect(o, rest[0], stdout, stderr)
	case rest[0] == "bench":
		return bench(o, rest[1:], stdin, stdout, stderr)
	}
	return fail(stderr, &usageError{fmt.Sprintf("unknown command %q: want call, repl, list, health, stats or bench", strings.Join(rest, " "))})
}

// hmacKeyOf returns the HMAC key: -hmac-file's contents, else -hmac, else
// $PETREL_HMAC_KEY; nil for none. set holds the flags given.
func hmacKeyOf(set map[string]bool, file, key string) ([]byte, error) {
	switch {
	case set["hmac-file"] && set["hmac"]:
		return nil, &usageError{"-hmac-file and -hmac are two keys: give one"}
	case set["hmac-file"]:
		b, err := os.ReadFile(file)
		if err != nil {
			return nil, fmt.Errorf("-hmac-file: %w", err)
		}
		if b, _ = bytes.CutSuffix(b, []byte("\n")); len(b) == 0 {
			return nil, &usageError{fmt.Sprintf("-hmac-file: %s holds no key", file)}
		}
		return b, nil
	case set["hmac"]:
		if key == "" {
			return nil, nil
		}
		return []byte(key), nil
	}
	if k := os.Getenv("PETREL_HMAC_KEY"); k != "" {
		return []byte(k), nil
	}
	return nil, nil
}

// callFailed reports the error of a call: "status N: reason" for an
// answer with a status of 400 or more, one line otherwise.
func callFailed(stderr io.Writer, err error) int {
	var de *dialError
	var se *codec.StatusError
	if errors.As(err, &de) {
		return fail(stderr, de.err)
	}
	if errors.As(err, &se) {
		printStatus(stderr, se.Status, se.Reason)
		return exitStatus
	}
	return fail(stderr, err)
}

// fail reports err on one line and returns the matching exit status.
func fail(stderr io.Writer, err error) int {
	var ue *usageError
	if errors.As(err, &ue) {
		fmt.Fprintln(stderr, "petrel:", oneLine(err.Error()))
		return exitUsage
	}
	msg := oneLine(err.Error())
	if !strings.HasPrefix(msg, "petrel: ") {
		msg = "petrel: " + msg
	}
	if errors.Is(err, client.ErrDowngrade) {
		msg += "; -protocol 0 speaks version 0 with this server"
	}
	fmt.Fprintln(stderr, msg)
	return exitFailed
}

func printStatus(stderr io.Writer, s codec.Status, reason string) {
	if reason == "" {
		reason = s.Text()
	}
	fmt.Fprintf(stderr, "status %d: %s\n", s, oneLine(reason))
}

func oneLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}

// isTerminal reports whether f is an *os.File on a character device (a
// terminal; also /dev/null, which is harmless for what it decides).
func isTerminal(f any) bool {
	file, ok := f.(*os.File)
	if !ok {
		return false
	}
	st, err := file.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

// readPayload returns arg, or stdin when arg is "-", refusing more than
// limit bytes (0: the default limit).
func readPayload(arg string, stdin io.Reader, limit uint32) ([]byte, error) {
	if arg != "-" {
		return []byte(arg), nil
	}
	if limit == 0 {
		limit = codec.DefaultMaxPayload
	}
	b, err := io.ReadAll(io.LimitReader(stdin, int64(limit)+1))
	if err != nil {
		return nil, fmt.Errorf("reading stdin: %w", err)
	}
	if len(b) > int(limit) {
		return nil, fmt.Errorf("payload on stdin: %w", &codec.LimitError{Declared: uint64(len(b)), Limit: uint64(limit)})
	}
	return b, nil
}

func tlsConfig(caFile, certFile, keyFile, name string) (*tls.Config, error) {
	tc := &tls.Config{ServerName: name}
	if caFile != "" {
		pem, err := os.ReadFile(caFile)
		if err != nil {
			return nil, fmt.Errorf("-tls-ca: %w", err)
		}
		tc.RootCAs = x509.NewCertPool()
		if !tc.RootCAs.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("-tls-ca: no certificate in %s", caFile)
		}
	}
	if (certFile == "") != (keyFile == "") {
		return nil, &usageError{"-tls-cert and -tls-key go together"}
	}
	if certFile != "" {
		cert, err := tls.LoadX509KeyPair(certFile, keyFile)
		if err != nil {
			return nil, fmt.Errorf("client certificate: %w", err)
		}
		tc.Certificates = []tls.Certificate{cert}
	}
	return tc, nil
}

// dialError is a failure to dial: reported as such (exit status 3) even
// when it wraps a status error, such as a 502 from a server with another
// key.
type dialError struct{ err error }

func (e *dialError) Error() string { return e.err.Error() }
func (e *dialError) Unwrap() error { return e.err }

// callOnce dials, sends one request and returns its answer; with -v it
// prints the answer's details to stderr. o.timeout bounds the whole of it.
// A failure to dial is a *dialError.
func callOnce(o options, req string, payload []byte, stderr io.Writer) (client.Response, error) {
	ctx := context.Background()
	if o.timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, o.timeout)
		defer cancel()
	}
	c, err := client.Dial(ctx, o.cfg)
	if err != nil {
		return client.Response{}, &dialError{err}
	}
	defer c.Close()
	start := time.Now()
	resp, err := c.Call(ctx, req, payload)
	rtt := time.Since(start)
	var se *codec.StatusError
	if o.verbose && (err == nil || errors.As(err, &se)) {
		fmt.Fprintf(stderr, "petrel: status %v, seq %d, request %q, protocol %d, round trip %v\n",
			resp.Status, resp.Seq, resp.Request, c.Version(), rtt)
	}
	return resp, err
}

// call sends one request and prints the answer.
func call(o options, req string, payload []byte, stdout, stderr io.Writer) int {
	resp, err := callOnce(o, req, payload, stderr)
	if err != nil {
		return callFailed(stderr, err)
	}
	if !resp.Status.IsSuccess() {
		printStatus(stderr, resp.Status, string(resp.Payload))
		return exitStatus
	}
	return writeOut(stdout, stderr, resp.Payload)
}

// writeOut writes p to stdout, with a newline added when stdout is a
// terminal and p does not end with one.
func writeOut(stdout, stderr io.Writer, p []byte) int {
	if isTerminal(stdout) && !bytes.HasSuffix(p, []byte("\n")) {
		p = append(p, '\n')
	}
	if _, err := stdout.Write(p); err != nil {
		return fail(stderr, fmt.Errorf("writing stdout: %w", err))
	}
	return exitOK
}

// repl runs requests read from stdin, one per line, on one connection.
func repl(cfg client.Config, stdin io.Reader, stdout, stderr io.Writer) int {
	c, err := client.Dial(context.Background(), cfg)
	if err != nil {
		return fail(stderr, err)
	}
	defer c.Close()

	interactive := isTerminal(stdin)
	prompt := func() {
		if interactive {
			fmt.Fprint(stderr, "petrel> ")
		}
	}
	limit := cfg.MaxPayload
	if limit == 0 {
		limit = codec.DefaultMaxPayload
	}
	sc := bufio.NewScanner(stdin)
	sc.Buffer(make([]byte, 0, 64<<10), int(limit)+codec.MaxRequestLen+2)
	status := exitOK
	for prompt(); sc.Scan(); prompt() {
		line := strings.TrimRight(sc.Text(), "\r")
		if strings.TrimSpace(line) == "" {
			continue
		}
		req, payload, _ := strings.Cut(line, " ")
		resp, err := c.Call(context.Background(), req, []byte(payload))
		switch {
		case err != nil && c.Err() != nil: // the connection is gone
			callFailed(stderr, err)
			return exitFailed
		case err != nil:
			status = callFailed(stderr, err)
		case !resp.Status.IsSuccess():
			printStatus(stderr, resp.Status, string(resp.Payload))
			status = exitStatus
		default:
			// One write per answer, unbuffered: a program driving the
			// repl over a pipe sees each answer as soon as it comes.
			if _, err := stdout.Write(append(resp.Payload, '\n')); err != nil {
				return fail(stderr, fmt.Errorf("writing stdout: %w", err))
			}
		}
	}
	if err := sc.Err(); err != nil {
		return fail(stderr, fmt.Errorf("reading stdin: %w", err))
	}
	if interactive {
		fmt.Fprintln(stderr)
	}
	return status
}
