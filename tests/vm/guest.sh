#!/bin/bash
# Runs inside the VM (Debian's kernel under virtme-ng): starts nasflow before the NFS modules
# load, sets up a loopback kernel NFS server with an NFSv3 and an NFSv4.2 mount, runs
# workloads in distinct cgroups, and writes what they did (expect.txt) beside what nasflow
# printed (*.jsonl) into $R for the host's assertions.
#
# The run is a sequence of phases (`phase` below), each a function run in a subshell and a
# process group of its own, with its own log ($R/phase-<name>.log) and time limit. Each
# records "phase <name> ok|failed <exit status> <seconds>" in expect.txt; one that fails or
# hangs does not keep the later ones from running, and test_vm.py fails that phase's tests
# with its name and log. Nothing waits a fixed time for the agent: waits poll for what they
# need (the jsonl `seq`, the health endpoint, files, ports; lib.sh's wait_until), and a wait
# that runs out of time records "timeout <phase> <what>", which fails its phase.
set -u
R=$1
BIN=$2
STANDIN=$3
SINK=$4
ROTEL=$5
# Phases to run (all when empty): the other kernels of the matrix run a subset.
PHASES=${6:-}
HERE=$(cd "$(dirname "$0")" && pwd)
. "$HERE/lib.sh"
exec >"$R/guest.log" 2>&1
set -x
set -m # every phase runs in a process group of its own, to be killed whole when out of time
CG=/sys/fs/cgroup
EXP="$R/expect.txt"
WAIT_LOG=$EXP
: >"$EXP"
expect() { echo "$*" >>"$EXP"; }
expect kernel "$(uname -r)"
# The kernel's log as it is written: when the guest dies (an oops, the OOM killer), what it
# said last is on the host.
setsid dmesg --follow >"$R/dmesg.log" 2>&1 </dev/null &
failure() { # what: why the current phase gives up
	echo "failure $PHASE $*" >>"$EXP"
}

# Deterministic but varied sizes: the seed is logged, the sizes land in expect.txt.
SEED=${NASFLOW_VM_SEED:-$(( $(date +%s) % 100000 ))}
RANDOM=$SEED
expect seed "$SEED"
rnd() { echo $(( ($1) + (RANDOM * 32768 + RANDOM) % ($2 - $1 + 1) )); }

PHASE_NO=0
phase() { # name seconds function: runs one phase in isolation, records how it ended
	local name=$1 limit=$2 fn=$3 pid watchdog rc status start=$SECONDS
	if [ -n "$PHASES" ] && [[ " ${PHASES//,/ } " != *" $name "* ]]; then
		expect phase "$name" skipped 0 0
		return
	fi
	PHASE_NO=$((PHASE_NO + 1))
	(
		PHASE=$name
		# A subshell reseeds $RANDOM: seed each phase from the run's seed instead.
		RANDOM=$((SEED * 64 + PHASE_NO))
		"$fn"
	) </dev/null >"$R/phase-$name.log" 2>&1 &
	pid=$!
	(
		sleep "$limit"
		echo "timeout $name phase still running after $limit s: killed" >>"$EXP"
		kill -KILL -- "-$pid"
	) </dev/null >/dev/null 2>&1 &
	watchdog=$!
	wait "$pid"
	rc=$?
	kill -KILL -- "-$watchdog" 2>/dev/null
	{ wait "$watchdog"; } 2>/dev/null
	# Whatever the phase left running goes with it (services and agents run in sessions
	# of their own).
	kill -KILL -- "-$pid" 2>/dev/null
	status=ok
	if ((rc != 0)) || grep -q "^timeout $name " "$EXP"; then
		status=failed
	fi
	expect phase "$name" "$status" "$rc" $((SECONDS - start))
}

run_in() { # cgroup-path cmd...: runs cmd in the cgroup (v2 or the v1 memory hierarchy)
	local cg=$1; shift
	mkdir -p "$CGDIR$cg"
	( echo $BASHPID >"$CGDIR$cg/cgroup.procs" && exec "$@" )
}

fetch() { # url: its body on standard output
	/usr/bin/python3 -c 'import sys, urllib.request; sys.stdout.write(urllib.request.urlopen(sys.argv[1], timeout=30).read().decode())' "$1"
}

detach() { # cmd...: in the background and in a session of its own, so that it outlives its phase
	setsid "$@" </dev/null &
}

stop_pid() { # name pid: SIGTERM, then wait for the process to end
	kill -TERM "$2" && wait_until 60 "$1 exiting" not_running "$2"
}

start_agent() { # name, then OTLP flags: JSON lines and OTLP (through rotel) from one agent
	local name=$1; shift
	rm -f "/tmp/pid.agent-$name" "/tmp/exit.agent-$name"
	# A wrapper in a session of its own (the agent outlives the phase that starts it) notes
	# the agent's pid and, when it ends, its exit status.
	OTEL_RESOURCE_ATTRIBUTES="nasflow.test.phase=$name" detach bash -c \
		'"$@" & echo $! >"/tmp/pid.agent-$0"; wait $!; echo $? >"/tmp/exit.agent-$0"' "$name" \
		"$BIN" run --output jsonl --interval "$INTERVAL" \
		--node-name vm --kubelet-url https://127.0.0.1:10250 \
		--kubelet-token-file "$R/token" --kubelet-ca-file "$R/ca.pem" --task-labels team.example.com/task \
		"$@" >"$R/$name.jsonl" 2>"$R/$name.log"
	wait_until 30 "the $name agent started" test -s "/tmp/pid.agent-$name"
}

stop_agent() { # name
	local name=$1 pid s ok=0
	pid=$(cat "/tmp/pid.agent-$name") || { failure "no $name agent to stop"; return 1; }
	# The last workload is over: wait until an interval that began after it has been
	# printed (the one in progress may have read the maps before the workload ended).
	s=$(jsonl_seq "$R/$name.jsonl")
	wait_seq "$R/$name.jsonl" $((s + 2)) 60 "$name interval $((s + 2)), begun after the workloads" || ok=1
	# Peak resident memory and CPU time of the agent, for the chart's requests and limits.
	expect agent_rss_kb "$(awk '/^VmHWM/ {print $2}' "/proc/$pid/status")"
	expect agent_cpu_ticks "$(awk '{print $14 + $15}' "/proc/$pid/stat")" "$(getconf CLK_TCK)"
	kill -TERM "$pid"
	if wait_until 60 "the $name agent exiting after SIGTERM" test -s "/tmp/exit.agent-$name"; then
		expect agent_exit "$(cat "/tmp/exit.agent-$name")"
	else
		kill -KILL "$pid"
		expect agent_exit killed
		ok=1
	fi
	return $ok
}

declare -A WRITER
hold_write() { # cgroup file offset size tag: buffered write kept open
	run_in "$1" /usr/bin/python3 "$HERE/hold_write.py" "$2" "$3" "$4" "$R/ready.$5" "$R/release.$5" &
	WRITER[$5]=$!
	wait_until 60 "writer $5 ready" test -e "$R/ready.$5"
}
release() { # tag...: the writers close their files; returns once they have
	local t
	for t; do touch "$R/release.$t"; done
	for t; do wait "${WRITER[$t]}"; done
}

http_code() { # url: the HTTP status code, 0 when nothing answers
	/usr/bin/python3 -c 'import sys, urllib.request, urllib.error
try: print(urllib.request.urlopen(sys.argv[1], timeout=5).status)
except urllib.error.HTTPError as e: print(e.code)
except Exception: print(0)' "$1"
}
http_body() { # url: the response body on one line ("|" between lines), empty when nothing answers
	/usr/bin/python3 -c 'import sys, urllib.request, urllib.error
try: print(urllib.request.urlopen(sys.argv[1], timeout=5).read().decode().strip().replace("\n", "|"))
except urllib.error.HTTPError as e: print(e.read().decode().strip().replace("\n", "|"))
except Exception: print("")' "$1"
}
check() { # name: nasflow check with the agent's settings, as JSON, and its exit code
	"$BIN" check --output json --kubelet-url https://127.0.0.1:10250 --kubelet-token-file "$R/token" \
		--kubelet-ca-file "$R/ca.pem" --otlp-endpoint http://127.0.0.1:4317 >"$R/check-$1.json" 2>"$R/check-$1.log"
	expect check_exit "$1" $?
}

uuid() { cat /proc/sys/kernel/random/uuid; }
cid() { od -An -tx1 -N32 /dev/urandom | tr -d ' \n'; }
PODS=$R/pods.json
pod() { /usr/bin/python3 "$HERE/podlist.py" "$PODS" "$@"; }
CGDIR=$CG
INTERVAL=2s

start_rotel() {
	detach "$ROTEL" start --otlp-grpc-endpoint 127.0.0.1:4317 --otlp-http-endpoint 127.0.0.1:4318 --exporter otlp \
		--otlp-exporter-endpoint http://127.0.0.1:4319 --batch-timeout 100ms --pid-file /tmp/rotel.pid >>"$R/rotel.log" 2>&1
	echo $! >/tmp/pid.rotel
}

########## services: collector, sink, kubelet stand-in ##########
phase_services() {
	# A real collector (rotel) in front of a sink that records what it passes on.
	detach "$SINK" 127.0.0.1:4319 /tmp/otlp.jsonl /tmp/otlp-logs.jsonl /tmp/otlp-traces.jsonl >"$R/sink.log" 2>&1
	echo $! >/tmp/pid.sink
	start_rotel
	# The kubelet stand-in: HTTPS on 10250 with a bearer token, serving $PODS.
	echo '{"kind":"PodList","apiVersion":"v1","metadata":{},"items":[]}' >"$PODS"
	echo "vm-token-$RANDOM" >"$R/token"
	detach "$STANDIN" 127.0.0.1:10250 "$PODS" "$R/token" "$R/ca.pem" >"$R/standin.log" 2>&1
	local ok=0
	wait_until 60 "the kubelet stand-in's CA file" test -s "$R/ca.pem" || ok=1
	wait_until 60 "the kubelet stand-in listening on 10250" listening 10250 || ok=1
	wait_until 60 "the sink listening on 4319" listening 4319 || ok=1
	wait_until 60 "rotel listening on 4317 (gRPC)" listening 4317 || ok=1
	wait_until 60 "rotel listening on 4318 (HTTP)" listening 4318 || ok=1
	return $ok
}

phase_check_before_modules() {
	check before-modules
	# A node without the nfs module and without a collector: ready all the same, and /healthz
	# says what is degraded.
	local ok=0
	start_agent bare --otlp-endpoint http://127.0.0.1:1 --health-listen 127.0.0.1:9807 --shutdown-timeout 2s || return 1
	wait_until 60 "the bare agent's /readyz answering 200" answers_200 http://127.0.0.1:9807/readyz || ok=1
	wait_until 60 "the bare agent's /healthz naming the collector" has_body http://127.0.0.1:9807/healthz collector_failing || ok=1
	expect bare_readyz "$(http_code http://127.0.0.1:9807/readyz)"
	expect bare_healthz "$(http_code http://127.0.0.1:9807/healthz)" "$(http_body http://127.0.0.1:9807/healthz | tr ' ' '_')"
	stop_pid bare "$(cat /tmp/pid.agent-bare)" || ok=1
	return $ok
}
answers_200() { # url
	[ "$(http_code "$1")" = 200 ]
}
has_body() { # url word: the response body contains the word
	http_body "$1" | grep -q -- "$2"
}

########## cgroup v2 phases ##########
phase_v2_start() {
	start_agent v2 --otlp-endpoint http://127.0.0.1:4317 --health-listen 127.0.0.1:9808 || return 1
	wait_until 120 "the v2 agent's first health line" has_line "$R/v2.jsonl" '"kind":"health"' || return 1
	grep -q '"attached":false' "$R/v2.jsonl" && expect unattached_before_modules 1
	expect readyz_unattached "$(http_code http://127.0.0.1:9808/readyz)"
	expect healthz_unattached "$(http_body http://127.0.0.1:9808/healthz | tr ' ' '_')"
	expect healthz "$(http_code http://127.0.0.1:9808/healthz)"
	modprobe nfs
	local t0 ok=0
	t0=$(date +%s%N)
	wait_until 60 "the v2 agent attaching to the NFS client" has_line "$R/v2.log" 'attached to the NFS client' || ok=1
	expect attach_ms $(( ($(date +%s%N) - t0) / 1000000 ))
	return $ok
}

phase_nfs() {
	nfs_up || { failure "NFS server or mounts not set up"; return 1; }
	expect dev nas-a "$(mountpoint -d /srv/nas-a)"
	expect dev nas-b "$(mountpoint -d /srv/nas-b)"
}

phase_check_mounted() {
	check mounted
}

readyz_ok() {
	READYZ=$(http_code http://127.0.0.1:9808/readyz)
	[ "$READYZ" = 200 ]
}
phase_v2_ready() {
	# Ready once attached and an OTLP export went through.
	local ok=0
	wait_until 60 "/readyz answering 200 once attached" readyz_ok || ok=1
	expect readyz_attached "$READYZ"
	# The server programs load once nfsd is there (--nfs-server auto): their verification
	# takes seconds of the emulated CPUs, which the workloads' first intervals should not
	# share.
	wait_until 120 "the v2 agent attached to nfsd" has_line "$R/v2.log" 'attached to the NFS server' || ok=1
	return $ok
}

phase_v2_io() {
	# Direct I/O, odd sizes: every byte goes on the wire in the caller's context.
	for m in a b; do
		n=$(rnd 1 9000000)
		run_in "/dw-$m" dd if=/dev/zero of=/srv/nas-$m/direct bs=$n count=1 oflag=direct
		expect write "/dw-$m" nas-$m "$n"
		run_in "/dr-$m" dd if=/srv/nas-$m/direct of=/dev/null bs=1M iflag=direct
		expect read "/dr-$m" nas-$m "$n"
	done

	# Buffered writes kept open, flushed by `sync` from another cgroup: charged to the writer.
	for m in a b; do
		n=$(rnd 1 6000000)
		hold_write "/bw-$m" /srv/nas-$m/buffered 0 "$n" "bw-$m"
		expect write "/bw-$m" nas-$m "$n"
		run_in /syncer sync
		release "bw-$m"
	done
	expect absent /syncer

	# Two cgroups dirty one file; a sync from the root cgroup flushes both.
	n1=$(rnd 1 5000000); n2=$(rnd 1 5000000)
	hold_write /share-1 /srv/nas-a/shared 0 "$n1" s1
	hold_write /share-2 /srv/nas-a/shared "$n1" "$n2" s2
	sync
	release s1 s2
	expect write /share-1 nas-a "$n1"
	expect write /share-2 nas-a "$n2"

	# Buffered writes flushed by close() in the writer's own context.
	n=$(rnd 1 7000000)
	run_in /close-writer dd if=/dev/zero of=/srv/nas-b/closed bs=$n count=1
	expect write /close-writer nas-b "$n"

	# Buffered reads of uncached files (written with O_DIRECT): whole file, and a partial read
	# whose readahead may fetch a bounded amount more.
	n=$(rnd 1 12000000)
	dd if=/dev/zero of=/srv/nas-a/toread bs=$n count=1 oflag=direct
	expect write / nas-a "$n"
	run_in /reader cat /srv/nas-a/toread >/dev/null
	expect read /reader nas-a "$n"
	dd if=/dev/zero of=/srv/nas-b/big bs=1M count=16 oflag=direct
	expect write / nas-b 16777216
	p=$(rnd 100000 2000000)
	run_in /partial-reader head -c "$p" /srv/nas-b/big >/dev/null
	expect read_at_least /partial-reader nas-b "$p"

	# Pods in systemd-driver cgroups, each created while the agent runs: named on first export.
	U1=$(uuid); C1=$(cid)
	P1=/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod${U1//-/_}.slice/cri-containerd-$C1.scope
	pod ml trainer-7d9f8b6c5-q8z2x "$U1" app "$C1" ReplicaSet/trainer-7d9f8b6c5 pod-template-hash=7d9f8b6c5 team.example.com/task=llm-finetune
	VOL=/var/lib/kubelet/pods/$U1/volumes/kubernetes.io~nfs/datasets
	mkdir -p "$VOL" && mount --bind /srv/nas-a "$VOL"
	n=$(rnd 70000 4000000)
	run_in "$P1" dd if=/dev/zero of="$VOL/trainer-out" bs=$n count=1 oflag=direct
	expect write "$P1" nas-a "$n"
	expect attrs "$P1" k8s.namespace.name=ml k8s.pod.name=trainer-7d9f8b6c5-q8z2x "k8s.pod.uid=$U1" k8s.container.name=app \
		k8s.deployment.name=trainer k8s.replicaset.name=trainer-7d9f8b6c5 nasflow.task=llm-finetune "container.id=$C1"
	expect nas "$P1" nas-a server.address=127.0.0.1 nfs.export.path=/srv/v4/exa nfs.version=3 k8s.volume.name=datasets "nfs.mount.point=$VOL"

	U2=$(uuid); C2=$(cid)
	P2=/kubepods.slice/kubepods-pod${U2//-/_}.slice/cri-containerd-$C2.scope
	pod data db-0 "$U2" postgres "$C2" StatefulSet/db app=postgres
	n=$(rnd 70000 4000000)
	run_in "$P2" dd if=/dev/zero of=/srv/nas-b/db-wal bs=$n count=1 oflag=direct
	expect write "$P2" nas-b "$n"
	expect attrs "$P2" k8s.namespace.name=data k8s.pod.name=db-0 k8s.statefulset.name=db nasflow.task=db k8s.container.name=postgres
	expect nas "$P2" nas-b server.address=127.0.0.2 nfs.export.path=/exb nfs.version=4.2 nfs.mount.point=/srv/nas-b

	U3=$(uuid); C3=$(cid)
	P3=/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod${U3//-/_}.slice/cri-containerd-$C3.scope
	pod ops nightly-backup-29123456-x7k2p "$U3" backup "$C3" Job/nightly-backup-29123456
	run_in "$P3" dd if=/srv/nas-a/toread of=/dev/null bs=1M iflag=direct
	expect attrs "$P3" k8s.pod.name=nightly-backup-29123456-x7k2p k8s.cronjob.name=nightly-backup k8s.job.name=nightly-backup-29123456 \
		nasflow.task=nightly-backup k8s.container.name=backup
	expect host_attrs /close-writer

	# A file read twice: the second read comes from the page cache, so application bytes double
	# and wire bytes do not.
	n=$(rnd 100000 3000000)
	dd if=/dev/zero of=/srv/nas-b/twice bs=$n count=1 oflag=direct
	expect write / nas-b "$n"
	run_in /cache-reader dd if=/srv/nas-b/twice of=/dev/null bs=1M
	run_in /cache-reader dd if=/srv/nas-b/twice of=/dev/null bs=1M
	expect read /cache-reader nas-b "$n"
	expect no_app_read /cache-reader nas-b
	# The default agent's programs: nothing on nfs_file_read (the page-cache hit path).
	bpftool -j prog show >"$R/v2-progs.json"
}

########## golden signals: metadata, errors, a slow link ##########
phase_metadata() {
	# A metadata storm: N stats of files created on the server, never seen by the client.
	N=$(rnd 120 200)
	mkdir -p /srv/v4/exb/storm && for i in $(seq "$N"); do : >"/srv/v4/exb/storm/f$i"; done
	U6=$(uuid); C6=$(cid)
	P6=/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod${U6//-/_}.slice/cri-containerd-$C6.scope
	pod ci indexer-5f6d7c8b9-k2m4p "$U6" indexer "$C6" ReplicaSet/indexer-5f6d7c8b9 team.example.com/task=file-indexer
	run_in "$P6" /usr/bin/python3 -c 'import os, sys; [os.stat(f"/srv/nas-b/storm/f{i}") for i in range(1, int(sys.argv[1]) + 1)]' "$N"
	expect meta "$P6" nas-b "$N"
}

phase_errors() {
	# Errors: EACCES, ESTALE and ENOENT on nas-a, ENOSPC on a 1 MiB export.
	mkdir -p /srv/v4/exs && mount -t tmpfs -o size=1m tmpfs /srv/v4/exs
	echo "/srv/v4/exs 127.0.0.0/8(rw,fsid=3,no_root_squash,no_subtree_check,insecure)" >>/etc/exports && exportfs -ra
	mkdir -p /srv/nas-s && mount -t nfs -o vers=3,tcp,nolock,wsize=65536 127.0.0.1:/srv/v4/exs /srv/nas-s
	mountpoint -q /srv/nas-s || { failure "small export not mounted"; return 1; }
	expect dev nas-s "$(mountpoint -d /srv/nas-s)"
	U7=$(uuid); C7=$(cid)
	P7=/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod${U7//-/_}.slice/cri-containerd-$C7.scope
	pod ci flaky-etl-6b8c9d7f5-r9t2q "$U7" etl "$C7" ReplicaSet/flaky-etl-6b8c9d7f5 team.example.com/task=flaky-etl
	K=$(rnd 5 12)
	run_in "$P7" /usr/bin/python3 "$HERE/errors.py" /srv/nas-a /srv/v4/exa /srv/nas-s "$K" "$R/errors.json"
	expect errors "$P7" nas-a nas-s "$K"
}

phase_netem() {
	# A slow link: another mount of nas-a's export through 127.0.0.3, whose packets netem
	# delays by 20 ms each way; then by 120 ms, beyond the mount's 100 ms timeout (timeo=1), so
	# RPCs are retransmitted. (The kernel times a reply from the last transmission: a 240 ms
	# round trip answers before the second resend at 300 ms, so every rtt stays above 31 ms.)
	mkdir -p /srv/nas-slow && mount -t nfs -o vers=3,tcp,nolock,timeo=1,retrans=30 127.0.0.3:/srv/v4/exa /srv/nas-slow
	mountpoint -q /srv/nas-slow || { failure "slow mount not mounted"; return 1; }
	expect dev nas-slow "$(mountpoint -d /srv/nas-slow)"
	M=$(rnd 15 30)
	mkdir -p /srv/v4/exa/slow && for i in $(seq $((M + 4))); do : >"/srv/v4/exa/slow/f$i"; done
	tc qdisc add dev lo root handle 1: prio bands 4 priomap 1 2 2 2 1 2 0 0 1 1 1 1 1 1 1 1 &&
		tc qdisc add dev lo parent 1:4 handle 40: netem delay 20ms &&
		tc filter add dev lo parent 1: protocol ip prio 1 u32 match ip dst 127.0.0.3/32 flowid 1:4 &&
		tc filter add dev lo parent 1: protocol ip prio 1 u32 match ip src 127.0.0.3/32 flowid 1:4 ||
		{ failure "netem not set up"; return 1; }
	U8=$(uuid); C8=$(cid)
	P8=/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod${U8//-/_}.slice/cri-containerd-$C8.scope
	pod ml remote-reader-0 "$U8" reader "$C8" StatefulSet/remote-reader team.example.com/task=remote-reader
	run_in "$P8" /usr/bin/python3 -c 'import os, sys; [os.stat(f"/srv/nas-slow/slow/f{i}") for i in range(1, int(sys.argv[1]) + 1)]' "$M"
	tc qdisc change dev lo parent 1:4 handle 40: netem delay 120ms
	run_in "$P8" /usr/bin/python3 -c 'import os, sys; [os.stat(f"/srv/nas-slow/slow/f{i}") for i in range(int(sys.argv[1]) + 1, int(sys.argv[1]) + 4)]' "$M"
	# Two pods read one 64 KiB block of the same file straight from the NAS (O_DIRECT) during
	# the outage below: one through the slow mount, one through nas-a, which netem leaves
	# alone. Only the first READ is slow: it alone becomes a span.
	head -c 1048576 /dev/urandom >/srv/v4/exa/slow/data
	U9=$(uuid); C9=$(cid)
	P9=/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod${U9//-/_}.slice/cri-containerd-$C9.scope
	pod ml slow-nas-reader-0 "$U9" reader "$C9" StatefulSet/slow-nas-reader team.example.com/task=slow-nas-reader
	U10=$(uuid); C10=$(cid)
	P10=/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod${U10//-/_}.slice/cri-containerd-$C10.scope
	pod ml fast-nas-reader-0 "$U10" reader "$C10" StatefulSet/fast-nas-reader team.example.com/task=fast-nas-reader
	rm -f "$R/ready.slowread" "$R/ready.fastread" "$R/go.direct"
	run_in "$P9" /usr/bin/python3 "$HERE/direct_read.py" /srv/nas-slow/slow/data "$R/ready.slowread" "$R/go.direct" >"$R/slowread.ino" &
	SLOWREAD=$!
	run_in "$P10" /usr/bin/python3 "$HERE/direct_read.py" /srv/nas-a/slow/data "$R/ready.fastread" "$R/go.direct" >"$R/fastread.ino" &
	FASTREAD=$!
	wait_until 60 "the direct readers opened their files" test -e "$R/ready.slowread" -a -e "$R/ready.fastread" || return 1
	# A NAS that stops answering for a while (3 s each way): the age of the oldest RPC in
	# flight to it grows while the call hangs. Another cgroup: the call ends after the delay is
	# lifted, with round trips that no longer show it.
	tc qdisc change dev lo parent 1:4 handle 40: netem delay 3000ms
	local s ok=0
	s=$(jsonl_seq "$R/v2.jsonl")
	run_in /hung-reader stat "/srv/nas-slow/slow/f$((M + 4))" >/dev/null &
	HUNG=$!
	touch "$R/go.direct"
	# The outage lasts 5 s at least: its length is the workload, not a wait for the agent ...
	sleep 5
	# ... and until the agent has read its maps well into it: interval s+3 began at least two
	# intervals after s+1, the first that can have begun after the call did.
	wait_seq "$R/v2.jsonl" $((s + 3)) 60 "v2 interval $((s + 3)), read while the NAS hung" || ok=1
	tc qdisc del dev lo root
	wait "$HUNG"
	wait "$SLOWREAD" || { failure "the slow NAS's direct read failed"; ok=1; }
	wait "$FASTREAD" || { failure "the fast NAS's direct read failed"; ok=1; }
	expect direct_read slow "$P9" nas-slow "$(cat "$R/slowread.ino")"
	expect direct_read fast "$P10" nas-a "$(cat "$R/fastread.ino")"
	expect hung nas-slow 127.0.0.3
	expect slow "$P8" nas-slow "$M"
	return $ok
}

phase_idle() {
	# A cgroup that never touches NFS.
	run_in /idle dd if=/dev/zero of=/tmp/idle bs=1M count=4
	run_in /idle cat /etc/hostname >/dev/null
	expect absent /idle
}

phase_gone() {
	# A cgroup that goes away: its series is exported once more, marked gone, then dropped.
	local n off g
	n=$(rnd 1 3000000)
	off=$(file_size "$R/v2.jsonl")
	run_in /ephemeral dd if=/dev/zero of=/srv/nas-a/eph bs=$n count=1 oflag=direct
	expect write /ephemeral nas-a "$n"
	# Named while it exists: the agent has printed its series with its path.
	wait_until 60 "a v2 line naming /ephemeral" has_line "$R/v2.jsonl" '"cgroup":"/ephemeral",' "$off" || return 1
	off=$(file_size "$R/v2.jsonl")
	rmdir $CG/ephemeral
	expect gone /ephemeral
	# Seen gone by a cgroup walk (every 10 s), exported once more, then an interval without it.
	wait_until 120 "/ephemeral exported once more, marked gone" \
		has_line "$R/v2.jsonl" '"cgroup":"/ephemeral",.*"cgroup_gone":true' "$off" || return 1
	g=$(tail -c +$((off + 1)) "$R/v2.jsonl" | grep -m1 '"cgroup":"/ephemeral",.*"cgroup_gone":true' | grep -o '"seq":[0-9]*' | tr -dc 0-9)
	wait_seq "$R/v2.jsonl" $((g + 1)) 60 "v2 interval $((g + 1)), after /ephemeral's last line"
}

phase_outage() {
	# A pod that runs and ends while the collector is down: once it is back, the pod's final
	# values arrive, although the intervals since no longer hold it.
	local n off g pod_slice
	stop_pid rotel "$(cat /tmp/pid.rotel)" || return 1
	U9=$(uuid); C9=$(cid)
	pod_slice=/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod${U9//-/_}.slice
	P9=$pod_slice/cri-containerd-$C9.scope
	pod batch short-job-28000000-q7w2e "$U9" work "$C9" Job/short-job-28000000
	n=$(rnd 1 4000000)
	off=$(file_size "$R/v2.jsonl")
	run_in "$P9" dd if=/dev/zero of=/srv/nas-a/short-job bs=$n count=1 oflag=direct
	expect outage_write "$P9" nas-a "$n"
	wait_until 60 "a v2 line naming the short job" has_line "$R/v2.jsonl" "\"cgroup\":\"$P9\"," "$off" || return 1
	off=$(file_size "$R/v2.jsonl")
	rmdir "$CGDIR$P9" "$CGDIR$pod_slice"
	wait_until 120 "the short job's series marked gone" \
		has_line "$R/v2.jsonl" "\"cgroup\":\"$P9\",.*\"cgroup_gone\":true" "$off" || return 1
	g=$(tail -c +$((off + 1)) "$R/v2.jsonl" | grep -m1 "\"cgroup\":\"$P9\",.*\"cgroup_gone\":true" | grep -o '"seq":[0-9]*' | tr -dc 0-9)
	wait_seq "$R/v2.jsonl" $((g + 2)) 60 "v2 interval $((g + 2)), two after the short job's last line" || return 1
	start_rotel
	wait_until 60 "rotel listening on 4317 again" listening 4317 || return 1
	wait_until 120 "the short job's final bytes in the sink" \
		has_line /tmp/otlp.jsonl "\"k8s.pod.name\":\"short-job-28000000-q7w2e\".*\"metric\":\"nfs.client.io\".*\"value\":$n[,}]"
}

phase_commits() {
	# Two writers fsync one file at once: their COMMITs share an in-flight entry. Once they
	# are done, the in-flight map is empty again (no entry left with nothing in flight).
	local s
	run_in /committers /usr/bin/python3 "$HERE/commits.py" /srv/nas-a/committed 2 60 || { failure "the writers failed"; return 1; }
	s=$(jsonl_seq "$R/v2.jsonl")
	wait_seq "$R/v2.jsonl" $((s + 2)) 60 "v2 interval $((s + 2)), after the commits" || return 1
	expect commits_done_seq $((s + 2))
}

phase_churn() {
	# Pod-like cgroups created one after another, each doing NFS I/O, then removed: the
	# agent's maps, series and memory come back to where they were.
	local s pid n=${CHURN:-1000} i ok=0
	pid=$(cat /tmp/pid.agent-v2)
	s=$(jsonl_seq "$R/v2.jsonl")
	expect churn_before_seq "$s"
	expect churn_before_rss_kb "$(awk '/^VmRSS/ {print $2}' "/proc/$pid/status")"
	mkdir -p "$CGDIR/churn"
	for ((i = 0; i < n; i++)); do
		run_in "/churn/c$i" dd if=/dev/zero of=/srv/nas-a/churn bs=4096 count=1 oflag=direct status=none
		rmdir "$CGDIR/churn/c$i"
	done
	expect churn_cgroups "$n"
	# Every one of them is named gone and its keys deleted within a few cgroup walks.
	wait_until 240 "the churned cgroups' keys deleted" churn_done || ok=1
	s=$(jsonl_seq "$R/v2.jsonl")
	expect churn_after_seq "$s"
	expect churn_after_rss_kb "$(awk '/^VmRSS/ {print $2}' "/proc/$pid/status")"
	return $ok
}
churn_done() { # the newest v2 interval has no series of a churn cgroup, named or not yet named
	local s
	s=$(jsonl_seq "$R/v2.jsonl")
	! tac "$R/v2.jsonl" | grep -m400 "\"seq\":$s," | grep -q -e '"cgroup":"/churn/' -e '"cgroup":null'
}

phase_full() {
	# An agent whose kernel maps hold 8 series, and 24 cgroups doing I/O: what does not fit is
	# counted and exported, and the rest works.
	local i ok=0
	start_agent full --otlp-endpoint http://127.0.0.1:4317 --max-kernel-series 8 || return 1
	wait_until 60 "the full agent attached" has_line "$R/full.jsonl" '"attached":true' || return 1
	for ((i = 0; i < 24; i++)); do
		run_in "/full-$i" dd if=/dev/zero of=/srv/nas-b/full bs=4096 count=1 oflag=direct status=none
	done
	stop_agent full || ok=1
	return $ok
}

phase_v2_stop() {
	stop_agent v2
}

########## optional signals switched ##########
phase_features() {
	# Application bytes on, rtt and latency off: what each switch exports and attaches.
	start_agent feat --app-bytes on --rtt off --latency off || return 1
	wait_until 60 "the feat agent's RPC programs attached" grep -q "RPC tracing attached" "$R/feat.log" || return 1
	n=$(rnd 100000 3000000)
	dd if=/dev/zero of=/srv/nas-b/feat-twice bs=$n count=1 oflag=direct
	run_in /feat-reader dd if=/srv/nas-b/feat-twice of=/dev/null bs=1M
	run_in /feat-reader dd if=/srv/nas-b/feat-twice of=/dev/null bs=1M
	run_in /feat-reader stat /srv/nas-b/feat-missing-"$(uuid)"
	# One buffered write() of m bytes, flushed by this shell's sync: the application bytes
	# from nfs_file_write's return, the WRITE bytes charged to the writer at its entry.
	m=$(rnd 100000 3000000)
	run_in /feat-reader dd if=/dev/zero of=/srv/nas-b/feat-written-"$(uuid)" bs=$m count=1
	sync
	# A file written and rewritten in place before its flush (at close) leaves nothing
	# pending beyond what the file holds, so an appender's later flush is its own to the byte.
	# The file ends on a page boundary: the kernel may send the rest of a partly written page
	# with the appender's WRITE.
	f=/srv/nas-b/feat-rewritten-"$(uuid)"
	m2=$(($(rnd 25 250) * 4096))
	m3=$(rnd 100000 1000000)
	run_in /feat-rewriter python3 -c 'import os, sys
fd = os.open(sys.argv[1], os.O_WRONLY | os.O_CREAT)
b = b"x" * int(sys.argv[2])
for _ in range(2):
    os.pwrite(fd, b, 0)
os.close(fd)' "$f" "$m2"
	run_in /feat-appender dd if=/dev/zero of="$f" bs=$m3 count=1 oflag=append conv=notrunc
	expect feat_rewrite /feat-rewriter nas-b "$m2"
	expect feat_append /feat-appender nas-b "$m3"
	expect feat_read /feat-reader nas-b "$n"
	expect feat_app_read /feat-reader nas-b $((2 * n))
	expect feat_app_write /feat-reader nas-b "$m"
	bpftool -j prog show >"$R/feat-progs.json"
	stop_agent feat
}

########## slow operations ##########
phase_slow() {
	# Every operation counts as slow (1 ns) and at most 20 a second are reported: a storm of
	# LOOKUPs of missing names is capped, and what was reported plus what the kernel counted
	# as over the limit or lost is every timed operation.
	local n
	start_agent slow --slow-op-threshold 1ns --max-slow-ops-per-second 20 || return 1
	wait_until 60 "the slow agent's RPC programs attached" grep -q "RPC tracing attached" "$R/slow.log" || return 1
	n=$(rnd 300 500)
	run_in /slow-storm /usr/bin/python3 -c '
import os, sys
for i in range(int(sys.argv[1])):
    try:
        os.stat(f"/srv/nas-a/slow-missing-{i}")
    except FileNotFoundError:
        pass' "$n"
	expect slow_storm /slow-storm nas-a "$n"
	stop_agent slow
}

########## the NFS server side ##########
nfsd_ops() { # proc3|proc4ops index: one counter of the kernel's own nfsd statistics
	awk -v k="$1" -v i="$2" '$1 == k {print $(i + 3)}' /proc/net/rpc/nfsd
}
record_nfsd_ops() { # tag: the counters the server test compares, as the kernel counts them
	local op i
	for op in READ:6 WRITE:7 CREATE:8 REMOVE:12; do
		expect nfsd_ops "$1" 3 "${op%:*}" "$(nfsd_ops proc3 "${op#*:}")"
	done
	for op in READ:25 WRITE:38 OPEN:18 CLOSE:4 READ_PLUS:68; do
		expect nfsd_ops "$1" 4 "${op%:*}" "$(nfsd_ops proc4ops "${op#*:}")"
	done
}
second_client_up() { # a client of its own address: a network namespace behind a veth pair
	modprobe veth &&
		ip netns add c2 &&
		ip link add srv0 type veth peer name c2eth0 netns c2 &&
		ip addr add 10.99.0.1/24 dev srv0 && ip link set srv0 up &&
		ip -n c2 addr add 10.99.0.2/24 dev c2eth0 && ip -n c2 link set c2eth0 up && ip -n c2 link set lo up &&
		exportfs -o rw,fsid=1,no_root_squash,no_subtree_check,insecure 10.99.0.0/24:/srv/v4/exa
}
phase_server() {
	# What nfsd served, per export, client and operation, against what the clients moved.
	sync
	mkdir -p /srv/v4/tiny && mount -t tmpfs -o size=1m tmpfs /srv/v4/tiny &&
		exportfs -o rw,fsid=9,no_root_squash,no_subtree_check,insecure 127.0.0.0/8:/srv/v4/tiny &&
		mkdir -p /srv/nas-t && mount -t nfs -o vers=3,tcp,nolock 127.0.0.1:/srv/v4/tiny /srv/nas-t || {
		failure "the small export for ENOSPC"
		return 1
	}
	expect srv_dev nas-t "$(mountpoint -d /srv/nas-t)"
	# An export without fsid=: mountd keys it by the file system's UUID (fsid type 7).
	# (The image lives on a tmpfs: the guest's /tmp is an overlay a loop device cannot use.)
	local img=/srv/img/ext.img loopdev
	mkdir -p /srv/img && mount -t tmpfs -o size=64m tmpfs /srv/img && modprobe loop &&
		truncate -s 32M $img && mkfs.ext4 -q -F $img && loopdev=$(losetup -f --show $img) &&
		mkdir -p /srv/v4/ext && mount -t ext4 "$loopdev" /srv/v4/ext &&
		exportfs -o rw,no_root_squash,no_subtree_check,insecure 127.0.0.0/8:/srv/v4/ext &&
		mkdir -p /srv/nas-e && mount -t nfs -o vers=3,tcp,nolock 127.0.0.1:/srv/v4/ext /srv/nas-e || {
		failure "the ext4 (UUID) export"
		return 1
	}
	expect srv_dev nas-e "$(mountpoint -d /srv/nas-e)"
	expect ext_uuid "$(blkid -s UUID -o value $img)"
	start_agent srv --nfs-server on --otlp-endpoint http://127.0.0.1:4317 || return 1
	wait_until 60 "the srv agent attached to nfsd" grep -q "attached to the NFS server" "$R/srv.log" || return 1
	wait_until 60 "the srv agent attached to the client" grep -q "RPC tracing attached" "$R/srv.log" || return 1
	record_nfsd_ops before
	local m n
	for m in a b e; do
		n=$(rnd 1 3000000)
		run_in "/srv-w-$m" dd if=/dev/zero of=/srv/nas-$m/server-direct bs=$n count=1 oflag=direct
		expect srv_io "nas-$m" write "$n"
		run_in "/srv-r-$m" dd if=/srv/nas-$m/server-direct of=/dev/null bs=1M iflag=direct
		expect srv_io "nas-$m" read "$n"
	done
	# The agent names exports from the kernel's caches, which the exportfs of the second
	# client below flushes (an idle export's handles come back only with new requests): let
	# it read them after the I/O.
	local s
	s=$(jsonl_seq "$R/srv.jsonl")
	wait_seq "$R/srv.jsonl" $((s + 2)) 60 "srv interval $((s + 2)), begun after the I/O" || return 1
	# ENOSPC: more than the 1 MiB export holds.
	run_in /srv-full dd if=/dev/zero of=/srv/nas-t/full bs=1M count=2 oflag=direct
	# ESTALE: a directory the client holds goes away on the server (a directory, not a file:
	# nfsd keeps recently used files open, so their handles outlive an unlink for a while).
	mkdir /srv/nas-a/stale-dir
	python3 - <<'EOP'
import os
fd = os.open("/srv/nas-a/stale-dir", os.O_RDONLY)
os.rmdir("/srv/v4/exa/stale-dir")
try:
    os.listdir(fd)
except OSError as e:
    print("stale:", e)
EOP
	# A second client address: 10.99.0.2 in its own network namespace.
	if second_client_up; then
		n=$(rnd 1 2000000)
		mkdir -p /srv/nas-c2
		if ip netns exec c2 sh -c "mount -t nfs -o vers=3,tcp,nolock 10.99.0.1:/srv/v4/exa /srv/nas-c2 &&
			dd if=/dev/zero of=/srv/nas-c2/from-c2 bs=$n count=1 oflag=direct && umount /srv/nas-c2"; then
			expect srv_client 10.99.0.2 nas-a write "$n"
		else
			failure "the second client's mount or write"
		fi
	else
		failure "the second client's network namespace"
	fi
	record_nfsd_ops after
	stop_agent srv
}

########## directories ##########
progs_new() { # before.json after.json: the BPF programs loaded between two listings
	/usr/bin/python3 -c '
import json, sys
before = {p["id"] for p in json.load(open(sys.argv[1]))}
print(json.dumps([p for p in json.load(open(sys.argv[2])) if p["id"] not in before]))' "$1" "$2"
}
phase_dirs() {
	# Traffic per watched directory: nested ones, one named server:/export/... and reached
	# through a second mount (its own super block), a buffered write flushed by another
	# cgroup, metadata below a directory, a directory made after start, unwatched traffic.
	local a=/srv/nas-a/proj m2=/srv/dirs-m2 n b
	mkdir -p $a/team-a/sub/deeper $a/team-b $a/other && mkdir -p $m2 &&
		mount -t nfs -o vers=3,tcp,nolock,nosharecache 127.0.0.1:/srv/v4/exa/proj $m2 || {
		failure "the directories or the second mount"
		return 1
	}
	expect dir_dev m2 "$(mountpoint -d $m2)"
	b=127.0.0.1:/srv/v4/exa/proj/team-b
	# What each agent loads: the programs that appear while it starts.
	bpftool -j prog show >/tmp/progs-0.json
	# A real Prometheus scrapes the dirs agent's /metrics every second.
	printf 'global: {scrape_interval: 1s}\nscrape_configs:\n  - job_name: nasflow\n    static_configs: [{targets: ["127.0.0.1:9809"]}]\n' >/tmp/prometheus.yml
	rm -rf /tmp/prometheus-data
	detach /usr/bin/prometheus --config.file=/tmp/prometheus.yml --storage.tsdb.path=/tmp/prometheus-data \
		--web.listen-address=127.0.0.1:9090 >"$R/prometheus.log" 2>&1
	echo $! >/tmp/pid.prometheus
	# App bytes on and a short warm-up, so that every dashboard panel has data (the pod
	# dashboard's cache ratio, the NAS dashboard's anomaly score).
	start_agent dirs --directories "$a/team-a,$a/team-a/sub,$b,$a/later" --otlp-endpoint http://127.0.0.1:4317 \
		--prometheus-listen 127.0.0.1:9809 --app-bytes on --anomaly-warmup 16s || return 1
	wait_until 60 "the dirs agent watching team-b" grep -q "watching directory.*team-b" "$R/dirs.log" || return 1
	wait_until 120 "the dirs agent's RPC programs" grep -q "RPC tracing attached" "$R/dirs.log" || return 1
	bpftool -j prog show >/tmp/progs-1.json
	start_agent ops --operations WRITE,COMMIT --latency off || return 1
	wait_until 120 "the ops agent's RPC programs" grep -q "RPC tracing attached" "$R/ops.log" || return 1
	bpftool -j prog show >/tmp/progs-2.json
	progs_new /tmp/progs-0.json /tmp/progs-1.json >"$R/dirs-progs.json"
	progs_new /tmp/progs-1.json /tmp/progs-2.json >"$R/ops-progs.json"
	n=$(rnd 1 3000000)
	run_in /dirs-a dd if=/dev/zero of=$a/team-a/f bs=$n count=1 oflag=direct
	run_in /dirs-a dd if=$a/team-a/f of=/dev/null bs=1M iflag=direct
	expect dir_io /dirs-a nas-a $a/team-a "$n" "$n"
	n=$(rnd 1 3000000)
	run_in /dirs-sub dd if=/dev/zero of=$a/team-a/sub/deeper/f bs=$n count=1 oflag=direct
	run_in /dirs-sub dd if=$a/team-a/sub/deeper/f of=/dev/null bs=1M iflag=direct
	expect dir_io /dirs-sub nas-a $a/team-a/sub "$n" "$n"
	n=$(rnd 1 3000000)
	run_in /dirs-b dd if=/dev/zero of=$m2/team-b/f bs=$n count=1 oflag=direct
	run_in /dirs-b-read dd if=$a/team-b/f of=/dev/null bs=1M iflag=direct
	expect dir_io /dirs-b m2 $b "$n" 0
	expect dir_io /dirs-b-read nas-a $b 0 "$n"
	n=$(rnd 1 3000000)
	run_in /dirs-o dd if=/dev/zero of=$a/other/f bs=$n count=1 oflag=direct
	expect dir_io /dirs-o nas-a - "$n" 0
	n=$(rnd 1 3000000)
	hold_write /dirs-bw $a/team-a/sub/buffered 0 "$n" dbw
	run_in /dirs-syncer sync
	release dbw
	expect dir_io /dirs-bw nas-a $a/team-a/sub "$n" 0
	run_in /dirs-meta-b stat $a/team-b/missing-1
	run_in /dirs-meta-b stat $a/team-b/missing-2
	run_in /dirs-meta-b touch $a/team-b/made
	run_in /dirs-meta-b rm $a/team-b/made
	run_in /dirs-meta-o stat $a/other/missing-3
	expect dir_meta $b
	mkdir $a/later
	wait_until 60 "the dirs agent watching a directory made after start" grep -q "watching directory.*later" "$R/dirs.log" || return 1
	n=$(rnd 1 3000000)
	run_in /dirs-later dd if=/dev/zero of=$a/later/f bs=$n count=1 oflag=direct
	expect dir_io /dirs-later nas-a $a/later "$n" 0
	local ok=0 s up cp pp
	# A pod reads a file and writes one, twice, in scrapes apart: its second read comes from
	# the page cache. Prometheus' rates see the second round (a series' first value is no
	# increase), so the dashboards' throughput and the pod's read cache ratio
	# (1 - wire / application) have values, and the pod variables a pod.
	up=$(uuid); cp=$(cid)
	pp=/kubepods.slice/kubepods-pod${up//-/_}.slice/cri-containerd-$cp.scope
	pod dashboards reader-0 "$up" reader "$cp" StatefulSet/reader
	n=$(rnd 100000 3000000)
	dd if=/dev/zero of=$a/other/pod-f bs=$n count=1 oflag=direct
	run_in "$pp" dd if=$a/other/pod-f of=/dev/null bs=1M
	run_in "$pp" dd if=/dev/zero of=$a/other/pod-w bs=$n count=1 oflag=direct
	s=$(jsonl_seq "$R/dirs.jsonl")
	wait_seq "$R/dirs.jsonl" $((s + 2)) 60 "dirs interval $((s + 2)), after the pod's first round" || ok=1
	run_in "$pp" dd if=$a/other/pod-f of=/dev/null bs=1M
	run_in "$pp" dd if=/dev/zero of=$a/other/pod-w bs=$n count=1 oflag=direct
	# Prometheus has scraped an interval that began after the last workload.
	s=$(jsonl_seq "$R/dirs.jsonl")
	wait_seq "$R/dirs.jsonl" $((s + 2)) 60 "dirs interval $((s + 2)), after the workloads" || ok=1
	sleep 3
	fetch http://127.0.0.1:9809/metrics >"$R/dirs-metrics.txt" || ok=1
	fetch 'http://127.0.0.1:9090/api/v1/query?query=nfs_client_io_bytes_total' >"$R/prometheus-io.json" || ok=1
	/usr/bin/python3 "$HERE/dashboard_queries.py" "$HERE/../../dashboards" http://127.0.0.1:9090 >"$R/dashboard-queries.json" || ok=1
	stop_pid prometheus "$(cat /tmp/pid.prometheus)" || ok=1
	stop_agent dirs || ok=1
	stop_agent ops || ok=1
	umount $m2
	return $ok
}

########## anomalies ##########
phase_anomaly() {
	# Two pods write steadily (Poisson, 50/s each) to nas-b through the warm-up and beyond;
	# then one bursts for 10 s, then both go on steadily. One agent judges with the default
	# threshold and a 40 s warm-up.
	local ua ca pa ub cb pb s0 s wa wb stop=/tmp/anomaly-stop warm=20 ok=0
	rm -f $stop
	ua=$(uuid); ca=$(cid); ub=$(uuid); cb=$(cid)
	pa=/kubepods.slice/kubepods-pod${ua//-/_}.slice/cri-containerd-$ca.scope
	pb=/kubepods.slice/kubepods-pod${ub//-/_}.slice/cri-containerd-$cb.scope
	pod batch steady-writer-0 "$ua" writer "$ca" StatefulSet/steady-writer team.example.com/task=steady
	pod batch bursty-loader-0 "$ub" loader "$cb" StatefulSet/bursty-loader team.example.com/task=bursty
	start_agent anom --otlp-endpoint http://127.0.0.1:4317 --anomaly-warmup "$((warm * 2))s" || return 1
	wait_until 120 "the anom agent's RPC programs" grep -q "RPC tracing attached" "$R/anom.log" || return 1
	run_in "$pa" /usr/bin/python3 "$HERE/paced.py" /srv/nas-b/anom-a 50 600 $stop 1 >/dev/null &
	wa=$!
	run_in "$pb" /usr/bin/python3 "$HERE/paced.py" /srv/nas-b/anom-b 50 600 $stop 2 >/dev/null &
	wb=$!
	s0=$(jsonl_seq "$R/anom.jsonl")
	expect anomaly_steady_from "$s0"
	# The warm-up, then as many intervals again of steady traffic that must raise nothing.
	wait_seq "$R/anom.jsonl" $((s0 + 2 * warm + 2)) 300 "anom interval $((s0 + 2 * warm + 2)), steady" || ok=1
	s=$(jsonl_seq "$R/anom.jsonl")
	expect anomaly_burst_after "$s"
	run_in "$pb" /usr/bin/python3 "$HERE/paced.py" /srv/nas-b/anom-burst 0 10 $stop >/dev/null
	s=$(jsonl_seq "$R/anom.jsonl")
	expect anomaly_burst_until "$((s + 1))"
	wait_seq "$R/anom.jsonl" $((s + 8)) 120 "anom interval $((s + 8)), after the burst" || ok=1
	expect anomaly_pods "$pa" "$pb"
	expect anomaly_nas "$(mountpoint -d /srv/nas-b)"
	# The agent stops while the steady writers still run: their end is not judged.
	stop_agent anom || ok=1
	touch $stop
	wait "$wa" "$wb"
	return $ok
}

########## cgroup v1 phase ##########
phase_v1() {
	umount $CG &&
		mount -t tmpfs cgroup_root $CG &&
		mkdir -p $CG/memory $CG/pids $CG/unified &&
		mount -t cgroup -o memory memory $CG/memory &&
		mount -t cgroup -o pids pids $CG/pids &&
		mount -t cgroup2 none $CG/unified ||
		{ failure "cgroup v1 hierarchies not mounted"; return 1; }
	CGDIR=$CG/memory
	INTERVAL=1s
	start_agent v1 --otlp-endpoint http://127.0.0.1:4318 --otlp-protocol http/protobuf --histogram explicit || return 1
	wait_until 60 "the v1 agent attached" has_line "$R/v1.jsonl" '"attached":true' || return 1
	# cgroupfs-driver cgroups, as the kubelet makes them on v1 hosts.
	U4=$(uuid); C4=$(cid)
	P=/kubepods/burstable/pod$U4/$C4
	pod kube-system node-cache-x2x9z "$U4" cache "$C4" DaemonSet/node-cache
	n=$(rnd 1 9000000)
	run_in $P dd if=/dev/zero of=/srv/nas-a/v1direct bs=$n count=1 oflag=direct
	expect v1write $P nas-a "$n"
	expect v1attrs $P k8s.namespace.name=kube-system k8s.pod.name=node-cache-x2x9z k8s.daemonset.name=node-cache nasflow.task=node-cache \
		k8s.container.name=cache "container.id=$C4"
	U5=$(uuid); C5=$(cid)
	P=/kubepods/pod$U5/$C5
	pod default debug-shell "$U5" sh "$C5" -
	n=$(rnd 1 6000000)
	hold_write $P /srv/nas-b/v1buffered 0 "$n" v1bw
	run_in /system.slice/backup.service sync
	release v1bw
	expect v1write $P nas-b "$n"
	expect v1attrs $P k8s.pod.name=debug-shell nasflow.task=debug-shell
	expect v1absent /system.slice/backup.service
	stop_agent v1
}

########## the nfs module while attached ##########
phase_pin() {
	# The agent's tracepoint links hold nfs.ko: with every NFS volume unmounted, the module
	# still cannot be removed (nor reloaded) under an attached agent; once it stops, it can.
	local ok=0
	start_agent pin || return 1
	wait_until 60 "the pin agent attached" has_line "$R/pin.jsonl" '"attached":true' || return 1
	umount -a -t nfs,nfs4 2>/dev/null
	awk '$3 == "nfs" || $3 == "nfs4"' /proc/mounts | grep -q . && { failure "NFS still mounted"; ok=1; }
	modprobe -r nfsv4 nfsv3 2>/dev/null
	rmmod nfs 2>/dev/null
	expect rmmod_nfs_attached $?
	stop_agent pin || ok=1
	wait_until 60 "rmmod nfs once the agent stopped" rmmod nfs || ok=1
	expect rmmod_nfs_detached "$(grep -c '^nfs ' /proc/modules)"
	return $ok
}

########## what the collector passed on ##########
phase_collect() {
	local name ts ok=0
	# Each agent's last export has reached the sink: its points carry the time the agent read
	# its maps for its last interval, the last ts_ms of its jsonl.
	for name in v2 full srv dirs anom v1; do
		[ -s "$R/$name.jsonl" ] || continue
		ts=$(tac "$R/$name.jsonl" | grep -m1 -o '"ts_ms":[0-9]*' | tr -dc 0-9)
		wait_until 60 "$name's last export (time ${ts:-?} ms) in the sink" \
			has_line /tmp/otlp.jsonl "\"nasflow.test.phase\":\"$name\".*\"time\":${ts:-x}[0-9]\{6\}[,}]" || ok=1
	done
	stop_pid rotel "$(cat /tmp/pid.rotel)" || ok=1
	stop_pid sink "$(cat /tmp/pid.sink)" || ok=1
	cp /tmp/otlp.jsonl "$R/otlp.jsonl" || ok=1
	cp /tmp/otlp-logs.jsonl "$R/otlp-logs.jsonl" 2>/dev/null || : >"$R/otlp-logs.jsonl"
	cp /tmp/otlp-traces.jsonl "$R/otlp-traces.jsonl" 2>/dev/null || : >"$R/otlp-traces.jsonl"
	return $ok
}

phase services 120 phase_services
phase check-before-modules 120 phase_check_before_modules
phase v2-start 240 phase_v2_start
phase nfs 240 phase_nfs
phase check-mounted 120 phase_check_mounted
phase v2-ready 120 phase_v2_ready
phase v2-io 300 phase_v2_io
phase metadata 240 phase_metadata
phase errors 240 phase_errors
phase netem 300 phase_netem
tc qdisc del dev lo root 2>/dev/null # in case the netem phase ended early
phase idle 120 phase_idle
phase gone 240 phase_gone
phase outage 300 phase_outage
phase commits 240 phase_commits
phase churn 900 phase_churn
phase full 240 phase_full
phase v2-stop 180 phase_v2_stop
# No agent may be left running: the features phase lists every loaded BPF program, and the
# v1 phase remounts the cgroup hierarchy.
kill_left() { [ -s "/tmp/pid.agent-$1" ] && [ ! -s "/tmp/exit.agent-$1" ] && kill -KILL "$(cat "/tmp/pid.agent-$1")"; }
kill_left v2
phase features 180 phase_features
kill_left feat
phase slow 180 phase_slow
kill_left slow
phase server 240 phase_server
kill_left srv
phase dirs 300 phase_dirs
kill_left dirs
kill_left ops
phase anomaly 420 phase_anomaly
kill_left anom
phase v1 300 phase_v1
phase pin 180 phase_pin
phase collect 180 phase_collect
expect done
