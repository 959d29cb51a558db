package petrelprom

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/petrel-rpc/petrel/engine"
)

// collector reads a server's Stats at each scrape. It holds no state of
// its own, so Collect may run concurrently with itself.
type collector struct {
	srv *engine.Server

	open, conns, refused, requests, bytesIn, bytesOut, answers *prometheus.Desc
}

// NewCollector returns a collector of s's statistics, with metric names
// under namespace ("petrel" when empty) and constLabels (which may be nil)
// on every metric. The metrics are listed in the package documentation.
// The collector reads [engine.Server.Stats] at every scrape, and keeps
// reporting the final counts once the server has stopped.
func NewCollector(s *engine.Server, namespace string, constLabels prometheus.Labels) prometheus.Collector {
	if namespace == "" {
		namespace = "petrel"
	}
	desc := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc(prometheus.BuildFQName(namespace, "", name), help, labels, constLabels)
	}
	return &collector{
		srv:      s,
		open:     desc("connections_open", "Connections open now."),
		conns:    desc("connections_total", "Connections accepted since the server started."),
		refused:  desc("connections_refused_total", "Connections refused: over the connection limit, during shutdown, or over the TLS handshake limit."),
		requests: desc("requests_total", "Requests answered."),
		bytesIn:  desc("received_bytes_total", "Bytes of request frames received."),
		bytesOut: desc("sent_bytes_total", "Bytes of answer frames sent."),
		answers:  desc("answers_total", `Answers by status code; "other" for codes not counted one by one.`, "status"),
	}
}

// Describe implements prometheus.Collector.
func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.open, c.conns, c.refused, c.requests, c.bytesIn, c.bytesOut, c.answers} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (c *collector) Collect(ch chan<- prometheus.Metric) {
	st := c.srv.Stats()
	send := func(d *prometheus.Desc, t prometheus.ValueType, v float64, labels ...string) {
		m, err := prometheus.NewConstMetric(d, t, v, labels...)
		if err != nil { // an invalid constant label; the registry reports it
			m = prometheus.NewInvalidMetric(d, err)
		}
		ch <- m
	}
	send(c.open, prometheus.GaugeValue, float64(st.OpenConns))
	send(c.conns, prometheus.CounterValue, float64(st.TotalConns))
	send(c.refused, prometheus.CounterValue, float64(st.Refused))
	send(c.requests, prometheus.CounterValue, float64(st.Requests))
	send(c.bytesIn, prometheus.CounterValue, float64(st.BytesIn))
	send(c.bytesOut, prometheus.CounterValue, float64(st.BytesOut))
	for status, n := range st.ByStatus {
		send(c.answers, prometheus.CounterValue, float64(n), status)
	}
}
