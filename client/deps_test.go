package client_test

import (
	"os/exec"
	"strings"
	"testing"
)

// TestDependencies keeps the client light to embed: the standard library
// and Petrel's own codec and address parsing, nothing else (no gnet).
func TestDependencies(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", "github.com/petrel-rpc/petrel/client").Output()
	if err != nil {
		t.Skipf("go list: %v", err)
	}
	allowed := map[string]bool{
		"github.com/petrel-rpc/petrel/client":           true,
		"github.com/petrel-rpc/petrel/codec":            true,
		"github.com/petrel-rpc/petrel/internal/netaddr": true,
	}
	for _, p := range strings.Fields(string(out)) {
		first, _, _ := strings.Cut(p, "/")
		if !strings.Contains(first, ".") || allowed[p] {
			continue // standard library, or ours
		}
		t.Errorf("client depends on %s", p)
	}
}
