package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/petrel-rpc/petrel/codec"
)

// The built-in requests of a server with introspection on.
var introspectionRequests = map[string]string{
	"list":   "petrel.handlers",
	"health": "petrel.health",
	"stats":  "petrel.stats",
}

// handlerInfo is one element of petrel.handlers' answer.
type handlerInfo struct {
	Name          string `json:"name"`
	NonBlocking   bool   `json:"nonBlocking"`
	Timeout       string `json:"timeout"` // a Go duration, or "" for none
	MaxPayload    uint64 `json:"maxPayload"`
	MaxConcurrent uint64 `json:"maxConcurrent"`
}

// introspect runs list, health or stats.
func introspect(o options, cmd string, stdout, stderr io.Writer) int {
	resp, err := callOnce(o, introspectionRequests[cmd], nil, stderr)
	var de *dialError
	var se *codec.StatusError
	switch {
	case err != nil && !errors.As(err, &de) && errors.As(err, &se) && se.Status == codec.StatusNoHandler:
		fmt.Fprintln(stderr, "petrel: server has introspection off (start it with -introspection)")
		return exitStatus
	case err != nil:
		return callFailed(stderr, err)
	case !resp.Status.IsSuccess():
		printStatus(stderr, resp.Status, string(resp.Payload))
		return exitStatus
	}
	var out []byte
	switch cmd {
	case "list":
		out = handlerTable(resp.Payload)
	case "health":
		out = []byte("ok\n")
	case "stats":
		var b bytes.Buffer
		if json.Indent(&b, resp.Payload, "", "  ") == nil {
			out = append(b.Bytes(), '\n')
		}
	}
	if out == nil { // not the JSON expected: as it came
		out = resp.Payload
	}
	return writeOut(stdout, stderr, out)
}

// handlerTable formats petrel.handlers' answer as a table, one handler per
// line; it returns nil when p is not the JSON expected.
func handlerTable(p []byte) []byte {
	var hs []handlerInfo
	if json.Unmarshal(p, &hs) != nil {
		return nil
	}
	for _, h := range hs {
		if h.Name == "" {
			return nil
		}
	}
	slices.SortStableFunc(hs, func(a, b handlerInfo) int { return strings.Compare(a.Name, b.Name) })
	var b bytes.Buffer
	tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tNON-BLOCKING\tTIMEOUT\tMAX-PAYLOAD\tMAX-CONCURRENT")
	for _, h := range hs {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", h.Name, yesNo(h.NonBlocking), orDash(h.Timeout), count(h.MaxPayload), count(h.MaxConcurrent))
	}
	tw.Flush()
	return b.Bytes()
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func count(n uint64) string {
	if n == 0 {
		return "-"
	}
	return strconv.FormatUint(n, 10)
}
