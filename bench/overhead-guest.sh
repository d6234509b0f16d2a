#!/bin/bash
# Inside the VM: what users feel. Each workload runs with no agent and with an agent,
# alternating (off, agent, off, agent, ...), so that drift in the emulated machine hits both
# sides alike; every agent mode gets its own pairs. Then one run per workload with the
# default agent and kernel.bpf_stats_enabled=1 gives the programs' kernel time per I/O.
# Results: one JSON line per run in $R/runs.jsonl, the bpf_stats runs in $R/stats.jsonl.
set -u
R=$1; BIN=$2; NOOP=$3
HERE=$(cd "$(dirname "$0")" && pwd)
. "$HERE/../tests/vm/lib.sh"
exec >"$R/guest.log" 2>&1
set -x
# PAIRS, SECS (per run), MODES (agent modes), WORKLOADS, from the host. The no-op agent
# attaches empty programs to the hooks the default agent attaches: the noise reference.
. "$R/settings.sh"
nfs_up || { echo "fatal: nfs setup" >"$R/fatal"; exit 1; }
M=/srv/nas-b # NFSv4.2, the version most clusters mount
mkdir -p /sys/fs/cgroup/bench
echo $$ >/sys/fs/cgroup/bench/cgroup.procs

# The data files, written once: fio then only reads or overwrites them.
fio --name=prep --directory=$M --rw=write --bs=1m --size=64m --direct=1 --filename=data \
	--output-format=terse >/dev/null
fio --name=prep --directory=$M --rw=write --bs=1m --size=16m --direct=1 --filename=wdata \
	--output-format=terse >/dev/null
cat $M/data >/dev/null # the page-cache workload reads this file from memory
# The dirs64 mode watches 64 directories: the mount's root, which holds every workload file
# (a walk finds it one or two levels up), and 63 siblings below it.
DIRS64=$M
for i in $(seq 63); do mkdir -p "$M/dir$i"; DIRS64="$DIRS64,$M/dir$i"; done

# A second of ramp before each measured run; none in the bpf_stats runs, whose program
# time is divided by every I/O of the run.
RAMP=1
FIO_COMMON() {
	echo --directory=$M --bs=4k --ioengine=psync --time_based --runtime=$SECS --ramp_time=$RAMP \
		--output-format=json
}
workload() { # name out.json
	case $1 in
	cached-read) fio --name=w $(FIO_COMMON) --filename=data --size=64m --rw=randread \
		--invalidate=0 --output="$2" ;;
	direct-read) fio --name=w $(FIO_COMMON) --filename=data --size=64m --rw=randread \
		--direct=1 --output="$2" ;;
	cached-write) fio --name=w $(FIO_COMMON) --filename=wdata --size=16m --rw=randwrite \
		--output="$2" ;;
	fsync-write) fio --name=w $(FIO_COMMON) --filename=wdata --size=16m --rw=randwrite \
		--fsync=1 --output="$2" ;;
	metadata) python3 "$HERE/metadata-storm.py" $M/meta "$SECS" >"$2" ;;
	esac
}

AGENT=
start_agent() { # mode
	rm -f "$R/agent.cur"
	case $1 in
	default) "$BIN" run --output jsonl --interval 5s >/dev/null 2>"$R/agent.cur" & ;;
	app-bytes) "$BIN" run --output jsonl --interval 5s --app-bytes on >/dev/null 2>"$R/agent.cur" & ;;
	client-only) "$BIN" run --output jsonl --interval 5s --nfs-server off >/dev/null 2>"$R/agent.cur" & ;;
	dirs64) "$BIN" run --output jsonl --interval 5s --directories "$DIRS64" >/dev/null 2>"$R/agent.cur" & ;;
	lean) "$BIN" run --output jsonl --interval 5s --operations READ,WRITE,COMMIT --latency off >/dev/null 2>"$R/agent.cur" & ;;
	no-slow) "$BIN" run --output jsonl --interval 5s --slow-op-threshold 0 >/dev/null 2>"$R/agent.cur" & ;;
	no-latency) "$BIN" run --output jsonl --interval 5s --latency off >/dev/null 2>"$R/agent.cur" & ;;
	noop) "$NOOP" >"$R/agent.cur" 2>&1 & ;;
	before) "$BEFORE" run --output jsonl --interval 5s >/dev/null 2>"$R/agent.cur" & ;;
	esac
	AGENT=$!
	case $1 in
	noop) wait_until 120 "no-op programs attached" grep -q attached "$R/agent.cur" ;;
	client-only) wait_until 120 "agent attached" grep -q "RPC tracing attached" "$R/agent.cur" ;;
	dirs64) wait_until 120 "agent attached" grep -q "RPC tracing attached" "$R/agent.cur" &&
		wait_until 120 "server programs attached" grep -q "attached to the NFS server" "$R/agent.cur" &&
		wait_until 120 "directories watched" grep -q "watching directory" "$R/agent.cur" ;;
	*) wait_until 120 "agent attached" grep -q "RPC tracing attached" "$R/agent.cur" &&
		wait_until 120 "server programs attached" grep -q "attached to the NFS server" "$R/agent.cur" ;;
	esac
}
stop_agent() {
	kill -TERM "$AGENT" 2>/dev/null
	wait "$AGENT" 2>/dev/null
	cat "$R/agent.cur" >>"$R/agent.log"
	AGENT=
}

# Before a cached-read run, with no agent yet: direct reads drop the file's pages.
warm() { [ "$1" != cached-read ] || cat $M/data >/dev/null; }

run() { # workload mode round
	local out="$R/out.json"
	warm "$1"
	[ "$2" = off ] || start_agent "$2" || { echo "fatal: agent $2 did not attach" >"$R/fatal"; exit 1; }
	sync
	workload "$1" "$out"
	[ "$2" = off ] || stop_agent
	python3 "$HERE/overhead-record.py" "$1" "$2" "$3" "$out" >>"$R/runs.jsonl"
}

for w in $WORKLOADS; do
	for round in $(seq "$PAIRS"); do
		for mode in $MODES; do
			run "$w" off "$round"
			run "$w" "$mode" "$round"
		done
	done
done

# Kernel time of the programs of each of STATS_MODES' agents (default: the default agent's)
# per workload I/O.
sysctl -w kernel.bpf_stats_enabled=1
RAMP=0
for mode in $STATS_MODES; do
	for w in $WORKLOADS; do
		warm "$w"
		start_agent "$mode" || { echo "fatal: agent did not attach" >"$R/fatal"; exit 1; }
		bpftool -j prog show >"$R/before.json"
		workload "$w" "$R/out.json"
		bpftool -j prog show >"$R/after.json"
		stop_agent
		python3 "$HERE/overhead-record.py" "$w" "$mode" stats "$R/out.json" "$R/before.json" "$R/after.json" >>"$R/stats.jsonl"
	done
done
sysctl -w kernel.bpf_stats_enabled=0
echo done >"$R/done"
