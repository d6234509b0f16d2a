#!/bin/bash
# The VM end-to-end suite: boots Debian's kernel under virtme-ng (TCG), runs tests/vm/guest.sh
# there with a loopback kernel NFS server, then asserts on what nasflow printed.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
R=${NASFLOW_VM_RESULTS:-$ROOT/target/vm-results}
KERNEL=${NASFLOW_VM_KERNEL:-$(ls /boot/vmlinuz-*-amd64 2>/dev/null | sort -V | tail -n 1)}
[ -n "$KERNEL" ] || { echo "no /boot/vmlinuz-*-amd64: apt-get install linux-image-amd64" >&2; exit 1; }
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
rm -rf "$R" && mkdir -p "$R"
echo "VM suite: kernel $KERNEL, results in $R"
start=$(date +%s)
timeout 1200 vng -r "$KERNEL" --user root --disable-kvm --memory 2G --rwdir "$R" \
	--exec "$ROOT/tests/vm/guest.sh $R $NASFLOW_BIN $STANDIN $SINK $ROTEL" >"$R/vng.log" 2>&1 || {
	echo "the VM run failed; tail of $R/vng.log and $R/guest.log:" >&2
	tail -n 30 "$R/vng.log" "$R/guest.log" >&2 || true
}
echo "VM run took $(( $(date +%s) - start )) s"
# How each guest phase ended (logs in $R/phase-<name>.log), and any wait that timed out.
grep -E '^(phase|timeout|failure) ' "$R/expect.txt" 2>/dev/null || echo "no phase ended: see $R/guest.log"
NASFLOW_VM_RESULTS=$R python3 -m pytest -q -p no:cacheprovider "$ROOT/tests/vm"
