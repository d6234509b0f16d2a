#!/bin/bash
# Inside the VM: nasflow's probe and the empty baseline programs on the same tracepoints,
# kernel.bpf_stats_enabled=1, a fixed fio workload on both NFS mounts, then bpftool's
# per-program run counts and run times.
set -u
R=$1; BIN=$2; NOOP=$3
HERE=$(cd "$(dirname "$0")" && pwd)
. "$HERE/../tests/vm/lib.sh"
exec >"$R/guest.log" 2>&1
set -x
nfs_up || { echo "fatal: nfs setup" >"$R/fatal"; exit 1; }
sysctl -w kernel.bpf_stats_enabled=1
"$BIN" run --output jsonl --interval 5s --app-bytes on >"$R/nasflow.jsonl" 2>"$R/nasflow.log" &
AGENT=$!
"$NOOP" --app-bytes on >"$R/noop.log" 2>&1 &
NOOPPID=$!
for i in $(seq 100); do grep -q attached "$R/noop.log" && grep -q '"attached":true' "$R/nasflow.jsonl" && break; sleep 0.2; done
mkdir -p /sys/fs/cgroup/bench
echo $$ >/sys/fs/cgroup/bench/cgroup.procs
for m in a b; do
	fio --name=seqwrite --directory=/srv/nas-$m --rw=write --bs=64k --size=48m --direct=1 --ioengine=psync --output-format=terse >/dev/null
	fio --name=seqwrite --directory=/srv/nas-$m --rw=read --bs=64k --size=48m --direct=1 --ioengine=psync --output-format=terse >/dev/null
	fio --name=buffered --directory=/srv/nas-$m --rw=randwrite --bs=4k --size=16m --ioengine=psync --end_fsync=1 --output-format=terse >/dev/null
	echo 3 >/proc/sys/vm/drop_caches
	fio --name=buffered --directory=/srv/nas-$m --rw=read --bs=128k --size=16m --ioengine=psync --output-format=terse >/dev/null
	# Metadata: create, stat uncached, remove 300 files.
	mkdir -p /srv/nas-$m/meta && for i in $(seq 300); do : >/srv/nas-$m/meta/f$i; done
	echo 3 >/proc/sys/vm/drop_caches
	python3 -c "import os; [os.stat('/srv/nas-$m/meta/f%d' % i) for i in range(1, 301)]"
	rm -rf /srv/nas-$m/meta
done
bpftool -j prog show >"$R/progs.json"
kill -TERM "$AGENT" "$NOOPPID"; wait
echo done >"$R/done"
