// Package petrelprom exports a Petrel server's statistics to Prometheus.
//
// [NewCollector] returns a [prometheus.Collector] that reads
// [engine.Server.Stats] at every scrape; register it with a
// [prometheus.Registerer]:
//
//	srv, err := engine.Listen(cfg)
//	...
//	prometheus.MustRegister(petrelprom.NewCollector(srv, "myapp", nil))
//	http.Handle("/metrics", promhttp.Handler())
//
// It exports, under the given namespace ("petrel" when empty):
//
//	NAMESPACE_connections_open            gauge    connections open now
//	NAMESPACE_connections_total           counter  connections accepted
//	NAMESPACE_connections_refused_total   counter  connections refused (connection limit, shutdown, handshake limit)
//	NAMESPACE_requests_total              counter  requests answered
//	NAMESPACE_received_bytes_total        counter  bytes of request frames received
//	NAMESPACE_sent_bytes_total            counter  bytes of answer frames sent
//	NAMESPACE_answers_total{status="N"}   counter  answers by status
//
// The status label is the answer's status code for the codes the server
// counts one by one (200, and the library's own statuses from 400 to 503)
// and "other" for the rest, application codes included. A status appears
// once it has been answered at least once. For several servers in one
// registry, tell them apart with constant labels, such as
// {"server": "admin"}.
//
// The package is separate from the engine so that only programs that
// import it depend on the Prometheus client library.
package petrelprom
