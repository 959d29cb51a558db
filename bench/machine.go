package bench

import (
	"os/exec"
	"runtime"
	"strings"
	"syscall"

	"github.com/klauspost/cpuid/v2"
)

// Machine describes where a run happened.
type Machine struct {
	CPU           string   `json:"cpu"`            // brand name from cpuid
	PhysicalCores int      `json:"physical_cores"` // from cpuid
	LogicalCores  int      `json:"logical_cores"`  // from cpuid
	NumCPU        int      `json:"num_cpu"`        // runtime.NumCPU: CPUs this process may use
	GOMAXPROCS    int      `json:"gomaxprocs"`
	Features      []string `json:"cpu_features"` // cpuid feature list
	GoVersion     string   `json:"go_version"`
	GOOS          string   `json:"goos"`
	GOARCH        string   `json:"goarch"`
	Kernel        string   `json:"kernel,omitempty"`
	Commit        string   `json:"commit,omitempty"` // git HEAD, "+dirty" when the tree has changes
}

// ReadMachine describes this machine and the checkout it runs from.
func ReadMachine() Machine {
	m := Machine{
		CPU:           cpuid.CPU.BrandName,
		PhysicalCores: cpuid.CPU.PhysicalCores,
		LogicalCores:  cpuid.CPU.LogicalCores,
		NumCPU:        runtime.NumCPU(),
		GOMAXPROCS:    runtime.GOMAXPROCS(0),
		Features:      cpuid.CPU.FeatureSet(),
		GoVersion:     runtime.Version(),
		GOOS:          runtime.GOOS,
		GOARCH:        runtime.GOARCH,
	}
	var u syscall.Utsname
	if syscall.Uname(&u) == nil {
		m.Kernel = cstr(u.Release[:])
	}
	if out, err := exec.Command("git", "rev-parse", "HEAD").Output(); err == nil {
		m.Commit = strings.TrimSpace(string(out))
		if st, err := exec.Command("git", "status", "--porcelain", "--untracked-files=no").Output(); err == nil && len(st) > 0 {
			m.Commit += "+dirty"
		}
	}
	return m
}

func cstr(b []int8) string {
	var sb strings.Builder
	for _, c := range b {
		if c == 0 {
			break
		}
		sb.WriteByte(byte(c))
	}
	return sb.String()
}
