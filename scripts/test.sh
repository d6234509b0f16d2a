#!/bin/bash
# Every test nasflow has: format, lints, unit and integration tests, then the VM suite
# (a real kernel NFS client and server under virtme-ng). Sets the machine up first.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
cargo fmt --all --check
cargo clippy --workspace --all-targets --quiet -- -D warnings
cargo test --workspace
python3 -m pytest -q -p no:cacheprovider tests/chart tests/dashboards
(cd dashboards/rules && promtool check rules nasflow-alerts.yaml && promtool test rules nasflow-alerts.test.yaml)
bash tests/vm/run.sh
