#!/usr/bin/env bash
# Pod-create latency through a real kube-apiserver with and without the webhook registered:
# prints p50/p99 of each and the difference. IRSA_BENCH_PODS (default 500) pods per side.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
IRSA_BIN_DIR=$(bash tests/cluster/install.sh)
export IRSA_BIN_DIR
cargo bench --bench admission_overhead 2>/dev/null
