package engine_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log"
	"time"

	pclient "github.com/petrel-rpc/petrel/client"
	"github.com/petrel-rpc/petrel/engine"
)

// Per-handler options: a cheap handler that never blocks runs without a
// worker; an upload handler takes larger payloads than the server's
// default and only a few at a time; a report handler gets a longer
// timeout than the others. Introspection lists what is in force.
func ExampleHandlerOptions() {
	ok := func(_ context.Context, req *engine.Request) (uint16, []byte, error) { return 200, nil, nil }
	srv, err := engine.Listen(engine.Config{
		Addr:           "127.0.0.1:0",
		IgnoreSignals:  true,
		HandlerTimeout: 2 * time.Second,
		Introspection:  true,
		Handlers:       map[string]engine.Handler{"ping": ok, "upload": ok},
		HandlerOptions: map[string]engine.HandlerOptions{
			"ping":   {NonBlocking: true},
			"upload": {MaxPayload: 64 << 20, MaxConcurrent: 4},
		},
	})
	if err != nil {
		log.Fatal(err)
	}
	defer srv.Close()
	// Handlers added later take their options as a last argument.
	if err := srv.Handle("report", ok, engine.HandlerOptions{Timeout: time.Minute}); err != nil {
		log.Fatal(err)
	}

	ctx := context.Background()
	c, err := pclient.Dial(ctx, pclient.Config{Addr: srv.AddrString()})
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	resp, err := c.Call(ctx, engine.IntrospectHandlers, nil)
	if err != nil {
		log.Fatal(err)
	}
	var handlers []engine.HandlerInfo
	if err := json.Unmarshal(resp.Payload, &handlers); err != nil {
		log.Fatal(err)
	}
	for _, h := range handlers {
		fmt.Printf("%s nonBlocking=%v timeout=%q maxPayload=%d maxConcurrent=%d\n",
			h.Name, h.NonBlocking, h.Timeout, h.MaxPayload, h.MaxConcurrent)
	}
	// Output:
	// petrel.handlers nonBlocking=true timeout="" maxPayload=4194304 maxConcurrent=0
	// petrel.health nonBlocking=true timeout="" maxPayload=4194304 maxConcurrent=0
	// petrel.stats nonBlocking=true timeout="" maxPayload=4194304 maxConcurrent=0
	// ping nonBlocking=true timeout="2s" maxPayload=4194304 maxConcurrent=0
	// report nonBlocking=false timeout="1m0s" maxPayload=4194304 maxConcurrent=0
	// upload nonBlocking=false timeout="2s" maxPayload=67108864 maxConcurrent=4
}
