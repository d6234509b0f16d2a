#!/bin/bash
# Runs inside the VM (Debian's kernel under virtme-ng): starts nasflow before the NFS modules
# load, sets up a loopback kernel NFS server with an NFSv3 and an NFSv4.2 mount, runs
# workloads in distinct cgroups, and writes what they did (expect.json) beside what nasflow
# printed (*.jsonl) into $R for the host's assertions.
set -u
R=$1
BIN=$2
STANDIN=$3
SINK=$4
ROTEL=$5
HERE=$(cd "$(dirname "$0")" && pwd)
. "$HERE/lib.sh"
exec >"$R/guest.log" 2>&1
set -x
CG=/sys/fs/cgroup
EXP="$R/expect.txt"
: >"$EXP"
expect() { echo "$*" >>"$EXP"; }

# Deterministic but varied sizes: the seed is logged, the sizes land in expect.txt.
SEED=${NASFLOW_VM_SEED:-$(( $(date +%s) % 100000 ))}
RANDOM=$SEED
expect seed "$SEED"
rnd() { echo $(( ($1) + (RANDOM * 32768 + RANDOM) % ($2 - $1 + 1) )); }

run_in() { # cgroup-path cmd...: runs cmd in the cgroup (v2 or the v1 memory hierarchy)
	local cg=$1; shift
	mkdir -p "$CGDIR$cg"
	( echo $BASHPID >"$CGDIR$cg/cgroup.procs" && exec "$@" )
}

wait_for() { # file pattern seconds
	local i
	for ((i = 0; i < $3 * 10; i++)); do
		grep -q "$2" "$1" 2>/dev/null && return 0
		sleep 0.1
	done
	return 1
}

start_agent() { # name, then OTLP flags: JSON lines and OTLP (through rotel) from one agent
	local name=$1; shift
	OTEL_RESOURCE_ATTRIBUTES="nasflow.test.phase=$name" "$BIN" run --output jsonl --interval "$INTERVAL" \
		--node-name vm --kubelet-url https://127.0.0.1:10250 \
		--kubelet-token-file "$R/token" --kubelet-ca-file "$R/ca.pem" --task-labels team.example.com/task \
		"$@" >"$R/$name.jsonl" 2>"$R/$name.log" &
	AGENT=$!
}

# A real collector (rotel) in front of a sink that records what it passes on.
"$SINK" 127.0.0.1:4319 /tmp/otlp.jsonl >"$R/sink.log" 2>&1 &
SINKPID=$!
"$ROTEL" start --otlp-grpc-endpoint 127.0.0.1:4317 --otlp-http-endpoint 127.0.0.1:4318 --exporter otlp \
	--otlp-exporter-endpoint http://127.0.0.1:4319 --batch-timeout 100ms --pid-file /tmp/rotel.pid >"$R/rotel.log" 2>&1 &
ROTELPID=$!

# The kubelet stand-in: HTTPS on 10250 with a bearer token, serving $PODS.
PODS=$R/pods.json
echo '{"kind":"PodList","apiVersion":"v1","metadata":{},"items":[]}' >"$PODS"
echo "vm-token-$RANDOM" >"$R/token"
"$STANDIN" 127.0.0.1:10250 "$PODS" "$R/token" "$R/ca.pem" >"$R/standin.log" 2>&1 &
for i in $(seq 50); do [ -s "$R/ca.pem" ] && break; sleep 0.1; done
uuid() { cat /proc/sys/kernel/random/uuid; }
cid() { od -An -tx1 -N32 /dev/urandom | tr -d ' \n'; }
pod() { /usr/bin/python3 "$HERE/podlist.py" "$PODS" "$@"; }

stop_agent() {
	sleep 5
	# Peak resident memory and CPU time of the agent, for the chart's requests and limits.
	expect agent_rss_kb "$(awk '/^VmHWM/ {print $2}' "/proc/$AGENT/status")"
	expect agent_cpu_ticks "$(awk '{print $14 + $15}' "/proc/$AGENT/stat")" "$(getconf CLK_TCK)"
	kill -TERM "$AGENT"
	wait "$AGENT"
	expect agent_exit $?
}

hold_write() { # cgroup file offset size tag: buffered write kept open
	run_in "$1" /usr/bin/python3 "$HERE/hold_write.py" "$2" "$3" "$4" "$R/ready.$5" "$R/release.$5" &
	local i
	for ((i = 0; i < 600; i++)); do [ -e "$R/ready.$5" ] && return 0; sleep 0.1; done
	expect fatal "writer $5 never became ready"
}

http_code() { # url: the HTTP status code, 0 when nothing answers
	/usr/bin/python3 -c 'import sys, urllib.request, urllib.error
try: print(urllib.request.urlopen(sys.argv[1], timeout=5).status)
except urllib.error.HTTPError as e: print(e.code)
except Exception: print(0)' "$1"
}
check() { # name: nasflow check with the agent's settings, as JSON, and its exit code
	"$BIN" check --output json --kubelet-url https://127.0.0.1:10250 --kubelet-token-file "$R/token" \
		--kubelet-ca-file "$R/ca.pem" --otlp-endpoint http://127.0.0.1:4317 >"$R/check-$1.json" 2>"$R/check-$1.log"
	expect check_exit "$1" $?
}

########## cgroup v2 phase ##########
CGDIR=$CG
INTERVAL=2s
check before-modules
start_agent v2 --otlp-endpoint http://127.0.0.1:4317 --health-listen 127.0.0.1:9808
wait_for "$R/v2.jsonl" '"kind":"health"' 30
grep -q '"attached":false' "$R/v2.jsonl" && expect unattached_before_modules 1
expect readyz_unattached "$(http_code http://127.0.0.1:9808/readyz)"
expect healthz "$(http_code http://127.0.0.1:9808/healthz)"
modprobe nfs
T0=$(date +%s%N)
wait_for "$R/v2.log" 'attached to the NFS client' 20
expect attach_ms $(( ($(date +%s%N) - T0) / 1000000 ))
nfs_up || { expect fatal nfs_setup_failed; exit 1; }
expect dev nas-a "$(mountpoint -d /srv/nas-a)"
expect dev nas-b "$(mountpoint -d /srv/nas-b)"
check mounted
sleep 5
expect readyz_attached "$(http_code http://127.0.0.1:9808/readyz)"

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
	touch "$R/release.bw-$m"
done
expect absent /syncer

# Two cgroups dirty one file; a sync from the root cgroup flushes both.
n1=$(rnd 1 5000000); n2=$(rnd 1 5000000)
hold_write /share-1 /srv/nas-a/shared 0 "$n1" s1
hold_write /share-2 /srv/nas-a/shared "$n1" "$n2" s2
sync
touch "$R/release.s1" "$R/release.s2"
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
expect app_read /cache-reader nas-b $((2 * n))

########## golden signals: metadata, errors, a slow link ##########
# A metadata storm: N stats of files created on the server, never seen by the client.
N=$(rnd 120 200)
mkdir -p /srv/v4/exb/storm && for i in $(seq "$N"); do : >"/srv/v4/exb/storm/f$i"; done
U6=$(uuid); C6=$(cid)
P6=/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod${U6//-/_}.slice/cri-containerd-$C6.scope
pod ci indexer-5f6d7c8b9-k2m4p "$U6" indexer "$C6" ReplicaSet/indexer-5f6d7c8b9 team.example.com/task=file-indexer
run_in "$P6" /usr/bin/python3 -c 'import os, sys; [os.stat(f"/srv/nas-b/storm/f{i}") for i in range(1, int(sys.argv[1]) + 1)]' "$N"
expect meta "$P6" nas-b "$N"

# Errors: EACCES, ESTALE and ENOENT on nas-a, ENOSPC on a 1 MiB export.
mkdir -p /srv/v4/exs && mount -t tmpfs -o size=1m tmpfs /srv/v4/exs
echo "/srv/v4/exs 127.0.0.0/8(rw,fsid=3,no_root_squash,no_subtree_check,insecure)" >>/etc/exports && exportfs -ra
mkdir -p /srv/nas-s && mount -t nfs -o vers=3,tcp,nolock,wsize=65536 127.0.0.1:/srv/v4/exs /srv/nas-s
mountpoint -q /srv/nas-s || expect fatal small_mount_failed
expect dev nas-s "$(mountpoint -d /srv/nas-s)"
U7=$(uuid); C7=$(cid)
P7=/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod${U7//-/_}.slice/cri-containerd-$C7.scope
pod ci flaky-etl-6b8c9d7f5-r9t2q "$U7" etl "$C7" ReplicaSet/flaky-etl-6b8c9d7f5 team.example.com/task=flaky-etl
K=$(rnd 5 12)
run_in "$P7" /usr/bin/python3 "$HERE/errors.py" /srv/nas-a /srv/v4/exa /srv/nas-s "$K" "$R/errors.json"
expect errors "$P7" nas-a nas-s "$K"

# A slow link: another mount of nas-a's export through 127.0.0.3, whose packets netem
# delays by 20 ms each way; then by 120 ms, beyond the mount's 100 ms timeout (timeo=1), so
# RPCs are retransmitted. (The kernel times a reply from the last transmission: a 240 ms
# round trip answers before the second resend at 300 ms, so every rtt stays above 31 ms.)
mkdir -p /srv/nas-slow && mount -t nfs -o vers=3,tcp,nolock,timeo=1,retrans=30 127.0.0.3:/srv/v4/exa /srv/nas-slow
mountpoint -q /srv/nas-slow || expect fatal slow_mount_failed
expect dev nas-slow "$(mountpoint -d /srv/nas-slow)"
M=$(rnd 15 30)
mkdir -p /srv/v4/exa/slow && for i in $(seq $((M + 4))); do : >"/srv/v4/exa/slow/f$i"; done
tc qdisc add dev lo root handle 1: prio bands 4 priomap 1 2 2 2 1 2 0 0 1 1 1 1 1 1 1 1 &&
	tc qdisc add dev lo parent 1:4 handle 40: netem delay 20ms &&
	tc filter add dev lo parent 1: protocol ip prio 1 u32 match ip dst 127.0.0.3/32 flowid 1:4 &&
	tc filter add dev lo parent 1: protocol ip prio 1 u32 match ip src 127.0.0.3/32 flowid 1:4 ||
	expect fatal netem_failed
U8=$(uuid); C8=$(cid)
P8=/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod${U8//-/_}.slice/cri-containerd-$C8.scope
pod ml remote-reader-0 "$U8" reader "$C8" StatefulSet/remote-reader team.example.com/task=remote-reader
run_in "$P8" /usr/bin/python3 -c 'import os, sys; [os.stat(f"/srv/nas-slow/slow/f{i}") for i in range(1, int(sys.argv[1]) + 1)]' "$M"
tc qdisc change dev lo parent 1:4 handle 40: netem delay 120ms
run_in "$P8" /usr/bin/python3 -c 'import os, sys; [os.stat(f"/srv/nas-slow/slow/f{i}") for i in range(int(sys.argv[1]) + 1, int(sys.argv[1]) + 4)]' "$M"
# A NAS that stops answering for a while (3 s each way): the age of the oldest RPC in
# flight to it grows while the call hangs. Another cgroup: the call ends after the delay is
# lifted, with round trips that no longer show it.
tc qdisc change dev lo parent 1:4 handle 40: netem delay 3000ms
run_in /hung-reader stat "/srv/nas-slow/slow/f$((M + 4))" >/dev/null &
HUNG=$!
sleep 5
tc qdisc del dev lo root
wait "$HUNG"
expect hung nas-slow 127.0.0.3
expect slow "$P8" nas-slow "$M"

# A cgroup that never touches NFS.
run_in /idle dd if=/dev/zero of=/tmp/idle bs=1M count=4
run_in /idle cat /etc/hostname >/dev/null
expect absent /idle

# A cgroup that goes away: its series is exported once more, marked gone, then dropped.
n=$(rnd 1 3000000)
run_in /ephemeral dd if=/dev/zero of=/srv/nas-a/eph bs=$n count=1 oflag=direct
expect write /ephemeral nas-a "$n"
sleep 2
rmdir $CG/ephemeral
expect gone /ephemeral
sleep 14
stop_agent

########## cgroup v1 phase ##########
umount $CG
mount -t tmpfs cgroup_root $CG
mkdir -p $CG/memory $CG/pids $CG/unified
mount -t cgroup -o memory memory $CG/memory
mount -t cgroup -o pids pids $CG/pids
mount -t cgroup2 none $CG/unified
CGDIR=$CG/memory
INTERVAL=1s
start_agent v1 --otlp-endpoint http://127.0.0.1:4318 --otlp-protocol http/protobuf --histogram explicit
wait_for "$R/v1.jsonl" '"attached":true' 20
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
touch "$R/release.v1bw"
expect v1write $P nas-b "$n"
expect v1attrs $P k8s.pod.name=debug-shell nasflow.task=debug-shell
expect v1absent /system.slice/backup.service
stop_agent
# Let the collector pass the last export on, then collect what the sink recorded.
sleep 2
kill -TERM "$ROTELPID"; wait "$ROTELPID"
sleep 1
kill -TERM "$SINKPID"; wait "$SINKPID"
cp /tmp/otlp.jsonl "$R/otlp.jsonl"
expect done
