#!/bin/bash
# The VM end-to-end suite: boots Debian's kernels under virtme-ng (TCG), runs
# tests/vm/guest.sh there with a loopback kernel NFS server, then asserts on what nasflow
# printed. The kernel matrix: 6.1 runs every phase; 5.10 and 6.12 run the attribution, RPC,
# OTLP and health phases. NASFLOW_VM_KERNELS picks kernels ("6.1 5.10 6.12" by default);
# NASFLOW_VM_KERNEL=/boot/vmlinuz-... runs one kernel image, with every phase or the
# comma-separated NASFLOW_VM_PHASES.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
RESULTS=${NASFLOW_VM_RESULTS:-$ROOT/target/vm-results}
command -v vng >/dev/null || { echo "vng missing: pip install virtme-ng" >&2; exit 1; }
if [ -z "${NASFLOW_BIN:-}" ]; then
	(cd "$ROOT" && cargo build --quiet --bin nasflow)
	NASFLOW_BIN=$ROOT/target/debug/nasflow
fi
# The kubelet stand-in and the OTLP sink are test helpers (examples); prebuilt ones can be
# given like NASFLOW_BIN, and with all three given nothing is built.
if [ -z "${NASFLOW_STANDIN:-}" ]; then
	(cd "$ROOT" && cargo build --quiet -p nasflow-enrich --example kubelet_standin)
	NASFLOW_STANDIN=$ROOT/target/debug/examples/kubelet_standin
fi
if [ -z "${NASFLOW_SINK:-}" ]; then
	(cd "$ROOT" && cargo build --quiet -p nasflow-otlp-out --example otlp_sink)
	NASFLOW_SINK=$ROOT/target/debug/examples/otlp_sink
fi
STANDIN=$NASFLOW_STANDIN
SINK=$NASFLOW_SINK
for b in "$NASFLOW_BIN" "$STANDIN" "$SINK"; do
	[ -x "$b" ] || { echo "not an executable: $b" >&2; exit 1; }
done
ROTEL=${ROTEL_AGENT:-$(python3 -c "import rotel, os; print(os.path.join(os.path.dirname(rotel.__file__), 'rotel-agent'))")}
[ -x "$ROTEL" ] || { echo "rotel-agent missing: pip install rotel" >&2; exit 1; }

# What the other kernels run: attribution, every RPC, OTLP through rotel, health and check.
SUBSET=services,check-before-modules,v2-start,nfs,check-mounted,v2-ready,v2-io,metadata,errors,gone,outage,commits,v2-stop,features,slow,server,dirs,collect

kernel_image() { # version prefix (6.1, 5.10, 6.12): the newest installed image of it
	ls /boot/vmlinuz-"$1".*-amd64 2>/dev/null | grep -v -e cloud -e rt- | sort -V | tail -n 1
}

boot() { # kernel-image results-dir phases: one guest run
	local kernel=$1 r=$2 phases=$3 start
	rm -rf "$r" && mkdir -p "$r"
	start=$(date +%s)
	timeout 1500 vng -r "$kernel" --user root --disable-kvm --memory 2G --rwdir "$r" \
		--exec "$ROOT/tests/vm/guest.sh $r $NASFLOW_BIN $STANDIN $SINK $ROTEL $phases" >"$r/vng.log" 2>&1 || {
		echo "the VM run failed; tail of $r/vng.log, $r/guest.log and $r/dmesg.log:" >&2
		tail -n 30 "$r/vng.log" "$r/guest.log" "$r/dmesg.log" >&2 || true
	}
	echo "VM run took $(($(date +%s) - start)) s"
}

# Whether the guest stopped in the middle of a phase without any phase failing or timing
# out: the emulated machine died (seen once in a hundred runs, in no phase in particular),
# not a test.
guest_died() { # results-dir
	! grep -qx done "$1/expect.txt" 2>/dev/null && ! grep -qE '^(phase [^ ]+ (failed|timeout)|timeout|failure) ' "$1/expect.txt" 2>/dev/null
}

run_one() { # kernel-image results-dir phases
	local kernel=$1 r=$2 phases=$3
	echo "VM suite: kernel $kernel, phases ${phases:-all}, results in $r"
	boot "$kernel" "$r" "$phases"
	# Once, and said loudly: the first run's results stay in $r.died for a look.
	if guest_died "$r"; then
		echo "VM suite: the guest died after $(grep '^phase ' "$r/expect.txt" | tail -n 1); running it again (first run kept in $r.died)" >&2
		rm -rf "$r.died" && mv "$r" "$r.died"
		boot "$kernel" "$r" "$phases"
	fi
	# How each guest phase ended (logs in $r/phase-<name>.log), and any wait that timed out.
	grep -E '^(phase|timeout|failure) ' "$r/expect.txt" 2>/dev/null | grep -v ' skipped ' || echo "no phase ended: see $r/guest.log"
	NASFLOW_VM_RESULTS=$r python3 -m pytest -q -p no:cacheprovider "$ROOT/tests/vm"
}

if [ -n "${NASFLOW_VM_KERNEL:-}" ]; then
	run_one "$NASFLOW_VM_KERNEL" "$RESULTS" "${NASFLOW_VM_PHASES:-}"
	exit
fi
failed=()
for version in ${NASFLOW_VM_KERNELS:-6.1 5.10 6.12}; do
	kernel=$(kernel_image "$version")
	[ -n "$kernel" ] || { echo "no /boot/vmlinuz-$version.*-amd64: run scripts/setup.sh" >&2; failed+=("$version (not installed)"); continue; }
	phases=$SUBSET
	[ "$version" = 6.1 ] && phases=""
	run_one "$kernel" "$RESULTS-$version" "$phases" || failed+=("$version")
done
if [ ${#failed[@]} -gt 0 ]; then
	echo "VM suite failed on: ${failed[*]}" >&2
	exit 1
fi
