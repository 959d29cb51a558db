package petrelprom_test

import (
	"context"
	"fmt"
	"os"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/prometheus/common/expfmt"

	"github.com/petrel-rpc/petrel/client"
	"github.com/petrel-rpc/petrel/engine"
	"github.com/petrel-rpc/petrel/engine/petrelprom"
)

func ExampleNewCollector() {
	srv, err := engine.Listen(engine.Config{
		Addr: "127.0.0.1:0",
		Handlers: map[string]engine.Handler{
			"echo": func(_ context.Context, req *engine.Request) (uint16, []byte, error) {
				return 200, req.Payload, nil
			},
		},
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return
	}
	defer srv.Close()

	// Register the collector; serve reg with promhttp.HandlerFor in a
	// real program.
	reg := prometheus.NewRegistry()
	reg.MustRegister(petrelprom.NewCollector(srv, "myapp", prometheus.Labels{"server": "public"}))

	ctx := context.Background()
	c, err := client.Dial(ctx, client.Config{Addr: srv.AddrString()})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return
	}
	defer c.Close()
	c.Call(ctx, "echo", []byte("hello"))
	c.Call(ctx, "nosuch", nil) // answered 400

	text, err := testutil.GatherAndFormat(reg, expfmt.TypeTextPlain, "myapp_requests_total", "myapp_answers_total")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return
	}
	fmt.Print(string(text))
	// Output:
	// # HELP myapp_answers_total Answers by status code; "other" for codes not counted one by one.
	// # TYPE myapp_answers_total counter
	// myapp_answers_total{server="public",status="200"} 2
	// myapp_answers_total{server="public",status="400"} 1
	// # HELP myapp_requests_total Requests answered.
	// # TYPE myapp_requests_total counter
	// myapp_requests_total{server="public"} 3
}
