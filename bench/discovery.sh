#!/usr/bin/env bash
# Requests per second, p99 and RSS of `irsa-webhook discovery` under wrk (64 connections, both
# public paths, plain HTTP on loopback), against a real kube-apiserver's documents.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
if ! command -v wrk >/dev/null; then
    SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO=sudo
    $SUDO apt-get update -qq && $SUDO apt-get install -y -qq wrk >/dev/null
fi
IRSA_BIN_DIR=$(bash tests/cluster/install.sh)
export IRSA_BIN_DIR
cargo bench --bench discovery_load 2>/dev/null
