#!/bin/sh
# perfstat.sh SYSTEM [CONNS [PAYLOAD [SECONDS]]]
#
# Kernel-side cost per request of one benchmark system's server: CPU time,
# context switches and system calls (futex, epoll_pwait, read, write,
# writev) counted by `perf stat` on the server process alone, exactly while
# `petrel-bench -drive` loads it with CONNS synchronous echo connections
# (default 1) of PAYLOAD bytes (default 64) for SECONDS (a whole number,
# default 3), after a 1 s warm-up. Needs perf (Debian: linux-perf) and
# permission to trace (root, or kernel.perf_event_paranoid <= 1); hardware
# counters are not needed. Linux on amd64 (arm64 has no epoll_wait, which
# is not counted).
#
#	bench/perfstat.sh reactor-pool 1
#	for s in reactor-pool reactor-inline std floor-gnet; do bench/perfstat.sh $s 1024; done
set -eu
sys=$1 conns=${2:-1} payload=${3:-64} secs=${4:-3}
srv=
dir=$(mktemp -d)
trap '[ -z "$srv" ] || kill "$srv" 2>/dev/null || true; rm -rf "$dir"' EXIT
go build -o "$dir/pb" ./bench/cmd/petrel-bench
mkfifo "$dir/in"
"$dir/pb" -serve "$sys" -addr 127.0.0.1:0 <"$dir/in" >"$dir/out" 2>&1 &
srv=$!
exec 3>"$dir/in" # the server runs until its stdin closes
i=0
until grep -q '^listening on ' "$dir/out"; do
	i=$((i + 1))
	kill -0 "$srv" 2>/dev/null && [ $i -lt 200 ] || { echo "perfstat: the server did not start:" >&2; cat "$dir/out" >&2; exit 1; }
	sleep 0.05
done
addr=$(sed -n 's/^listening on //p' "$dir/out")
"$dir/pb" -drive "$addr" -conns "$conns" -payload "$payload" -duration 1s >/dev/null
ev=task-clock,context-switches,raw_syscalls:sys_enter,syscalls:sys_enter_futex,syscalls:sys_enter_epoll_pwait,syscalls:sys_enter_read,syscalls:sys_enter_write,syscalls:sys_enter_writev
# perf counts the server for exactly as long as the drive runs.
out=$(perf stat -x, -e "$ev" -p "$srv" -o "$dir/perf" -- \
	"$dir/pb" -drive "$addr" -conns "$conns" -payload "$payload" -duration "${secs}s")
n=$(echo "$out" | awk '$1 == "answers" {print $2}')
[ "${n:-0}" -gt 0 ] || { echo "perfstat: no answers: $out" >&2; exit 1; }
printf '%-15s conns=%-5s payload=%-6s req/s=%-7s' "$sys" "$conns" "$payload" "$((n / secs))"
awk -F, -v n="$n" '/^[0-9]/ {
	name = $3; sub(/raw_syscalls:sys_enter/, "syscalls", name); sub(/syscalls:sys_enter_/, "", name)
	if (name == "task-clock") printf " cpu_us=%.1f", $1 * 1000 / n
	else printf " %s=%.2f", name, $1 / n
} END { print " (per request)" }' "$dir/perf"
exec 3>&-
wait "$srv" || { echo "perfstat: the server failed:" >&2; cat "$dir/out" >&2; exit 1; }
srv=
