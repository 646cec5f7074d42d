#!/usr/bin/env bash
# The whole benchmark on this machine: release build, a single-node garage S3 store on local
# disk (installed once with `cargo install garage --locked`), the local PostgreSQL and
# RabbitMQ. Writes bench/RESULTS.md and bench/results.json. Extra arguments go to
# `upconfirm-bench suite` (see `upconfirm-bench suite --help`).
set -euo pipefail
cd "$(dirname "$0")/.."

bash deploy/local/services.sh
export PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$PATH"
if ! command -v garage > /dev/null 2>&1; then
  echo "[bench] building garage once (about 10 minutes)" >&2
  cargo install garage --locked
fi
# The service and its load generator, side by side in target/release: the suite starts the
# service's processes from the `upconfirm` beside it.
cargo build --release --no-default-features -p upconfirm -p upconfirm-bench

work="$PWD/target/bench"
mkdir -p "$work"
port=${BENCH_S3_PORT:-3900}
set -a
# shellcheck disable=SC1090
eval "$(bash bench/garage.sh "$work/garage" "$port")"
set +a
# The run stores tens of GB (the large objects, the multipart file twice): they go with the
# store; its log stays.
trap 'kill "$(cat "$work/garage/pid")" 2> /dev/null || true; sleep 1; rm -rf "$work/garage/data" "$work/garage/meta"' EXIT

export DATABASE_URL=${BENCH_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/upconfirm_bench}
# The store shares this machine's CPUs with the service: bulk work yields its store turns
# to a waiting client's (README, WORKER_BULK_STORE_YIELD), as a one-machine deployment
# should be configured. RESULTS.md says which value ran.
export WORKER_BULK_STORE_YIELD=${WORKER_BULK_STORE_YIELD:-1}
psql "${DATABASE_URL%/*}/postgres" -qc "DROP DATABASE IF EXISTS ${DATABASE_URL##*/}" > /dev/null

target/release/upconfirm-bench suite --store-pid "$(cat "$work/garage/pid")" \
  --store-label "garage $(garage --version | grep -o "[0-9]*\.[0-9]*\.[0-9]*" | head -n 1) (single node, LMDB, local disk)" "$@"
