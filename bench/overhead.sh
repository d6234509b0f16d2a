#!/bin/bash
# What users feel: their NFS I/O with nasflow off and on, alternating in one VM run, with a
# no-op agent (empty programs on the same hooks) as the noise reference, plus the programs'
# kernel time per I/O from bpf_stats. Prints the tables BENCHMARKS.md records.
#   bash bench/overhead.sh            # build, run (about 30 min under TCG), print
# NASFLOW_OVERHEAD_PAIRS (5), _SECONDS (5 per run), _MODES, _WORKLOADS narrow a run, and
# _STATS_MODES (default) picks the agents whose kernel time per I/O is measured. Modes:
# default, client-only, noop, app-bytes, dirs64 (64 watched directories), lean (--operations
# READ,WRITE,COMMIT --latency off), no-slow (--slow-op-threshold 0), no-latency (--latency off);
# NASFLOW_BIN and NASFLOW_NOOP take prebuilt binaries (to measure an older build), and
# NASFLOW_BEFORE_BIN an earlier build measured as the mode `before` (default flags) in the
# same run, beside this one: before and after in one table.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
R=${NASFLOW_BENCH_RESULTS:-$ROOT/target/bench-overhead}
KERNEL=${NASFLOW_VM_KERNEL:-$(ls /boot/vmlinuz-6.1.*-amd64 | sort -V | tail -n 1)}
command -v vng >/dev/null && command -v fio >/dev/null || bash "$ROOT/scripts/setup.sh"
BIN=${NASFLOW_BIN:-$ROOT/target/release/nasflow}
NOOP=${NASFLOW_NOOP:-$ROOT/target/release/examples/noop_attach}
if [ -z "${NASFLOW_BIN:-}" ]; then
	(cd "$ROOT" && cargo build --quiet --release --bin nasflow && cargo build --quiet --release -p nasflow-probe --example noop_attach)
fi
case " ${NASFLOW_OVERHEAD_MODES:-} ${NASFLOW_OVERHEAD_STATS_MODES:-} " in
*" before "*) [ -x "${NASFLOW_BEFORE_BIN:-}" ] || { echo "the mode before needs NASFLOW_BEFORE_BIN: an earlier build of nasflow" >&2; exit 2; } ;;
esac
rm -rf "$R" && mkdir -p "$R"
echo "overhead: VM run on $KERNEL (results in $R)" >&2
# The guest does not inherit this environment: the run's settings go in a file.
cat >"$R/settings.sh" <<SET
PAIRS=${NASFLOW_OVERHEAD_PAIRS:-5}
SECS=${NASFLOW_OVERHEAD_SECONDS:-5}
MODES="${NASFLOW_OVERHEAD_MODES:-default client-only noop app-bytes}"
WORKLOADS="${NASFLOW_OVERHEAD_WORKLOADS:-cached-read direct-read cached-write fsync-write metadata}"
STATS_MODES="${NASFLOW_OVERHEAD_STATS_MODES:-default}"
BEFORE="${NASFLOW_BEFORE_BIN:-}"
SET
timeout 5400 vng -r "$KERNEL" --user root --disable-kvm --cpus "${NASFLOW_OVERHEAD_CPUS:-2}" --memory 2G --rwdir "$R" \
	--exec "$ROOT/bench/overhead-guest.sh $R $BIN $NOOP" >"$R/vng.log" 2>&1 || true
[ -e "$R/done" ] || { echo "the VM run failed: see $R/guest.log" >&2; tail -n 20 "$R/guest.log" >&2; exit 1; }
python3 "$ROOT/bench/overhead-report.py" "$R"
