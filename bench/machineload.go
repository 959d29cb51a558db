package bench

import (
	"bytes"
	"os"
	"strconv"
	"syscall"
)

// cpuTimes is a snapshot of machine-wide and own CPU time, to tell how much
// CPU other processes took during a point: the server and the load
// generator share the machine, and anything else running disturbs both.
type cpuTimes struct {
	busy, steal float64 // machine-wide seconds, from /proc/stat
	self        float64 // this process's user+system seconds
	ok          bool    // /proc/stat was readable
}

// clockTick is USER_HZ, the unit of /proc/stat; 100 on every Linux
// architecture Go supports.
const clockTick = 100

func readCPUTimes() cpuTimes {
	var t cpuTimes
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) == nil {
		t.self = tv(ru.Utime) + tv(ru.Stime)
	}
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return t
	}
	line, _, _ := bytes.Cut(b, []byte("\n"))
	f := bytes.Fields(line)
	if len(f) < 9 || string(f[0]) != "cpu" {
		return t
	}
	v := make([]float64, 8) // user nice system idle iowait irq softirq steal
	for i := range v {
		n, err := strconv.ParseUint(string(f[i+1]), 10, 64)
		if err != nil {
			return t
		}
		v[i] = float64(n) / clockTick
	}
	t.busy = v[0] + v[1] + v[2] + v[5] + v[6]
	t.steal = v[7]
	t.ok = true
	return t
}

// others returns the CPUs (cores' worth) that processes other than this one
// and the server used between a and b, given the server's own CPU seconds
// in that window, and the CPUs stolen by the hypervisor.
func others(a, b cpuTimes, server, secs float64) (other, steal float64) {
	if !a.ok || !b.ok || secs <= 0 {
		return 0, 0
	}
	other = (b.busy - a.busy - (b.self - a.self) - server) / secs
	return max(other, 0), (b.steal - a.steal) / secs
}
