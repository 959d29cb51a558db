package petrelprom_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/petrel-rpc/petrel/client"
	"github.com/petrel-rpc/petrel/codec"
	"github.com/petrel-rpc/petrel/engine"
	"github.com/petrel-rpc/petrel/engine/petrelprom"
)

func listen(t testing.TB, kind engine.Kind) *engine.Server {
	t.Helper()
	srv, err := engine.Listen(engine.Config{
		Addr:          "127.0.0.1:0",
		Engine:        kind,
		IgnoreSignals: true,
		Handlers: map[string]engine.Handler{
			"echo": func(_ context.Context, req *engine.Request) (uint16, []byte, error) {
				return 200, req.Payload, nil
			},
			"teapot": func(context.Context, *engine.Request) (uint16, []byte, error) {
				return 1418, []byte("short and stout"), nil
			},
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	return srv
}

func frameLen(req string, payload []byte) uint64 {
	return uint64(codec.HeaderLen + len(req) + len(payload))
}

func TestCollector(t *testing.T) {
	for _, kind := range []engine.Kind{engine.Reactor, engine.Std} {
		t.Run(string(kind), func(t *testing.T) { testCollector(t, kind) })
	}
}

func testCollector(t *testing.T, kind engine.Kind) {
	srv := listen(t, kind)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := client.Dial(ctx, client.Config{Addr: srv.AddrString()})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()

	// Bytes as the frames count them: the protocol check (version 1: the
	// version byte and a 16-byte nonce each way), then each call.
	in := frameLen(codec.ProtoCheck, make([]byte, 1+codec.NonceLen))
	out := in
	calls := []struct {
		req     string
		payload string
	}{{"echo", "hello"}, {"echo", "world!"}, {"nosuch", "x"}, {"teapot", ""}}
	for _, call := range calls {
		resp, err := c.Call(ctx, call.req, []byte(call.payload))
		var se *codec.StatusError
		if err != nil && !errors.As(err, &se) {
			t.Fatalf("%s: %v", call.req, err)
		}
		in += frameLen(call.req, []byte(call.payload))
		out += frameLen(call.req, resp.Payload)
	}

	coll := petrelprom.NewCollector(srv, "test", prometheus.Labels{"server": "public"})
	want := func(open int) string {
		return fmt.Sprintf(`
# HELP test_answers_total Answers by status code; "other" for codes not counted one by one.
# TYPE test_answers_total counter
test_answers_total{server="public",status="200"} 3
test_answers_total{server="public",status="400"} 1
test_answers_total{server="public",status="other"} 1
# HELP test_connections_open Connections open now.
# TYPE test_connections_open gauge
test_connections_open{server="public"} %d
# HELP test_connections_refused_total Connections refused: over the connection limit, during shutdown, or over the TLS handshake limit.
# TYPE test_connections_refused_total counter
test_connections_refused_total{server="public"} 0
# HELP test_connections_total Connections accepted since the server started.
# TYPE test_connections_total counter
test_connections_total{server="public"} 1
# HELP test_received_bytes_total Bytes of request frames received.
# TYPE test_received_bytes_total counter
test_received_bytes_total{server="public"} %d
# HELP test_requests_total Requests answered.
# TYPE test_requests_total counter
test_requests_total{server="public"} 5
# HELP test_sent_bytes_total Bytes of answer frames sent.
# TYPE test_sent_bytes_total counter
test_sent_bytes_total{server="public"} %d
`, open, in, out)
	}
	if err := testutil.CollectAndCompare(coll, strings.NewReader(want(1))); err != nil {
		t.Errorf("while the client is connected:\n%v", err)
	}

	// After a shutdown no connection is left, and the counts stay.
	if err := srv.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if err := testutil.CollectAndCompare(coll, strings.NewReader(want(0))); err != nil {
		t.Errorf("after shutdown:\n%v", err)
	}

	problems, err := testutil.CollectAndLint(coll)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("lint: %s: %s", p.Metric, p.Text)
	}
}

func TestDefaultNamespace(t *testing.T) {
	srv := listen(t, engine.Std)
	coll := petrelprom.NewCollector(srv, "", nil)
	if n := testutil.CollectAndCount(coll, "petrel_requests_total", "petrel_connections_open"); n != 2 {
		t.Errorf("got %d petrel_ metrics of the two asked for", n)
	}
}

// TestSeveralServers registers collectors of two servers in one registry,
// told apart by a constant label; the same labels twice are refused.
func TestSeveralServers(t *testing.T) {
	a, b := listen(t, engine.Std), listen(t, engine.Reactor)
	reg := prometheus.NewPedanticRegistry()
	if err := reg.Register(petrelprom.NewCollector(a, "", prometheus.Labels{"server": "a"})); err != nil {
		t.Fatal(err)
	}
	if err := reg.Register(petrelprom.NewCollector(b, "", prometheus.Labels{"server": "b"})); err != nil {
		t.Fatal(err)
	}
	if n, err := testutil.GatherAndCount(reg, "petrel_connections_total"); err != nil || n != 2 {
		t.Errorf("petrel_connections_total: %d series, %v; want 2", n, err)
	}
	err := reg.Register(petrelprom.NewCollector(b, "", prometheus.Labels{"server": "b"}))
	var are prometheus.AlreadyRegisteredError
	if !errors.As(err, &are) {
		t.Errorf("registering the same labels twice: %v, want an AlreadyRegisteredError", err)
	}
}

// TestInvalidLabel: a constant label clashing with the status label is
// refused at registration, not a panic at scrape time.
func TestInvalidLabel(t *testing.T) {
	srv := listen(t, engine.Std)
	reg := prometheus.NewRegistry()
	if err := reg.Register(petrelprom.NewCollector(srv, "", prometheus.Labels{"status": "x"})); err == nil {
		t.Error("a constant label named status was accepted")
	}
}
