package engine_test

import (
	"net/http"
	"net/http/httptest"
	"testing"
)

// Importing engine publishes nothing: no /debug/vars (expvar is not
// linked), no handler of any kind on http.DefaultServeMux.
func TestNoImportSideEffects(t *testing.T) {
	for _, path := range []string{"/debug/vars", "/debug/pprof/", "/"} {
		if _, pattern := http.DefaultServeMux.Handler(httptest.NewRequest("GET", path, nil)); pattern != "" {
			t.Errorf("%s is served by pattern %q", path, pattern)
		}
	}
}
