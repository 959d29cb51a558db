// Command petrel calls a Petrel server from the command line, as redis-cli
// does for Redis.
//
//	petrel [flags] call REQ [PAYLOAD]
//	petrel [flags] repl
//
// call sends one request; PAYLOAD "-" reads the payload from stdin. The
// answer's payload is written to stdout as it is, without a newline added.
//
// repl opens one connection and reads requests from stdin, one per line:
// the request text, then optionally a space and the payload (the rest of
// the line). Each answer's payload is written to stdout followed by a
// newline, as soon as it arrives; a non-2xx answer gives "status N: reason"
// on stderr. It stops at the end of input (exit status 0, or 1 if any
// answer was not 2xx), or when the connection closes (exit status 3).
//
// Flags:
//
//	-addr ADDR        server: host:port, tcp://host:port or unix:///path
//	                  (default $PETREL_ADDR)
//	-hmac KEY         HMAC key shared with the server
//	-tls              use TLS (implied by the other -tls flags)
//	-tls-ca F         trust the certificate authority in PEM file F
//	-tls-cert F       client certificate (PEM), with -tls-key F
//	-tls-name NAME    server name to verify (default: the address's host)
//	-timeout D        bound on dialing and each call (default 10s; 0: none)
//	-max-payload N    answer and request payload limit in bytes (0: 4 MiB)
//
// Exit status: 0 for a 2xx answer; 1 for any other answer, with
// "status N: reason" on stderr; 2 for a usage error; 3 when no answer
// could be had (network, TLS, protocol check, timeout), with one line on
// stderr saying why.
package main

import (
	"bufio"
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

func main() {
	os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}

// usageError is a mistake on the command line.
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

func run(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("petrel", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var (
		addr       = fs.String("addr", os.Getenv("PETREL_ADDR"), "server `address`: host:port, tcp://host:port or unix:///path (default $PETREL_ADDR)")
		hmacKey    = fs.String("hmac", "", "HMAC `key` shared with the server")
		useTLS     = fs.Bool("tls", false, "use TLS (implied by the other -tls flags)")
		tlsCA      = fs.String("tls-ca", "", "trust the certificate authority in this PEM `file`")
		tlsCert    = fs.String("tls-cert", "", "client certificate PEM `file` (with -tls-key)")
		tlsKey     = fs.String("tls-key", "", "client key PEM `file` (with -tls-cert)")
		tlsName    = fs.String("tls-name", "", "server `name` to verify (default: the address's host)")
		timeout    = fs.Duration("timeout", 10*time.Second, "bound on dialing and each call (0: none)")
		maxPayload = fs.Uint("max-payload", 0, "payload limit in `bytes` (0: 4 MiB)")
	)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "usage: petrel [flags] call REQ [PAYLOAD]   (PAYLOAD - reads stdin)\n       petrel [flags] repl\nflags:\n")
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
	cfg := client.Config{Addr: *addr, DialTimeout: *timeout, MaxPayload: uint32(*maxPayload)}
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
		if *hmacKey != "" {
			cfg.HMACKey = []byte(*hmacKey)
		}
		if *useTLS || *tlsCA != "" || *tlsCert != "" || *tlsKey != "" || *tlsName != "" {
			tc, err := tlsConfig(*tlsCA, *tlsCert, *tlsKey, *tlsName)
			if err != nil {
				return err
			}
			cfg.TLS = tc
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
			if payload, err = readPayload(rest[2], stdin, cfg.MaxPayload); err != nil {
				return fail(stderr, err)
			}
		}
		return call(cfg, *timeout, rest[1], payload, stdout, stderr)
	case rest[0] == "call":
		return fail(stderr, &usageError{"usage: petrel [flags] call REQ [PAYLOAD]"})
	case rest[0] == "repl" && len(rest) == 1:
		cfg.CallTimeout = *timeout
		return repl(cfg, stdin, stdout, stderr)
	}
	return fail(stderr, &usageError{fmt.Sprintf("unknown command %q: want call or repl", strings.Join(rest, " "))})
}

// callFailed reports the error of a call: "status N: reason" for an
// answer with a status of 400 or more, one line otherwise.
func callFailed(stderr io.Writer, err error) int {
	var se *codec.StatusError
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

// call dials, sends one request and prints the answer. timeout bounds the
// whole of it.
func call(cfg client.Config, timeout time.Duration, req string, payload []byte, stdout, stderr io.Writer) int {
	ctx := context.Background()
	if timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, timeout)
		defer cancel()
	}
	c, err := client.Dial(ctx, cfg)
	if err != nil {
		return fail(stderr, err)
	}
	defer c.Close()
	resp, err := c.Call(ctx, req, payload)
	if err != nil {
		return callFailed(stderr, err)
	}
	if !resp.Status.IsSuccess() {
		printStatus(stderr, resp.Status, string(resp.Payload))
		return exitStatus
	}
	if _, err := stdout.Write(resp.Payload); err != nil {
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

	interactive := false
	if f, ok := stdin.(*os.File); ok {
		if st, err := f.Stat(); err == nil && st.Mode()&os.ModeCharDevice != 0 {
			interactive = true
		}
	}
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
