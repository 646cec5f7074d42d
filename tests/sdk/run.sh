#!/usr/bin/env bash
# The Python SDK suite: builds upconfirm, runs `upconfirm dev` on its own database, queue
# prefix, data folder and ports, then
#   1. pytest on tests/sdk (the official SDK, mixpeek==1.3.783, against every route), and
#   2. schemathesis against the server's /openapi.json (schema conformance),
# and always stops the server and removes what it made. Exits non-zero if either failed.
#
#   bash tests/sdk/run.sh            # both
#   SDK_SKIP_SCHEMA=1 bash tests/sdk/run.sh -k confirm   # pytest only, arguments go to pytest
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$root"
venv="$root/.venv-sdk"

bash deploy/local/services.sh
bash deploy/local/python.sh

echo "Building upconfirm"
cargo build --quiet --bin upconfirm
target_dir=$(cargo metadata --format-version 1 --no-deps |
  "$venv/bin/python" -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')
binary="$target_dir/debug/upconfirm"
[ -x "$binary" ] || { echo "no binary at $binary" >&2; exit 1; }

free_port() {
  "$venv/bin/python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

suffix=$(od -An -N6 -tx1 /dev/urandom | tr -d ' \n')
db_name="upconfirm_sdk_$suffix"
pg_admin_url="postgres://postgres@127.0.0.1:5432/postgres"
work=$(mktemp -d -t upconfirm-sdk.XXXXXX)
api_port=$(free_port)
s3_port=$(free_port)
while [ "$s3_port" = "$api_port" ]; do s3_port=$(free_port); done
server_pid=""

cleanup() {
  local status=$?
  set +e
  if [ -n "$server_pid" ] && kill -0 "$server_pid" 2>/dev/null; then
    kill -TERM "$server_pid" 2>/dev/null
    for _ in $(seq 1 50); do kill -0 "$server_pid" 2>/dev/null || break; sleep 0.2; done
    kill -KILL "$server_pid" 2>/dev/null
    wait "$server_pid" 2>/dev/null
  fi
  psql "$pg_admin_url" -qAtc "DROP DATABASE IF EXISTS \"$db_name\" WITH (FORCE)" >/dev/null 2>&1 ||
    echo "could not drop database $db_name" >&2
  # The queues `upconfirm dev` declared under this run's prefix.
  if command -v rabbitmqctl >/dev/null 2>&1; then
    for queue in "sdk_$suffix.confirm" "sdk_$suffix.confirm.dead" "sdk_$suffix.batches"; do
      timeout 20 rabbitmqctl -q delete_queue "$queue" >/dev/null 2>&1 || true
    done
  fi
  rm -rf "$work"
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

export DATABASE_URL="postgres://postgres@127.0.0.1:5432/$db_name"
export QUEUE_PREFIX="sdk_$suffix"
export LISTEN_ADDR="127.0.0.1:$api_port"
export DEV_DATA_DIR="$work/dev"
export DEV_S3_PORT="$s3_port"
export LOG_FORMAT=text NO_COLOR=1
export RUST_LOG="${RUST_LOG:-info}"
base_url="http://127.0.0.1:$api_port"

# Run a copy: another build sharing the target directory may replace the binary meanwhile.
cp "$binary" "$work/upconfirm"

echo "Starting upconfirm dev on $base_url (S3 port $s3_port, database $db_name)"
# The rate limit stays on (every answer carries its X-RateLimit-* headers), set above the
# pace of the schema checks so that they measure the contract, not the limiter.
RATE_LIMIT_PER_SECOND=2000 RATE_LIMIT_BURST=4000 \
  "$work/upconfirm" dev </dev/null >"$work/server.log" 2>&1 &
server_pid=$!

ready=""
deadline=$((SECONDS + 60))
while [ "$SECONDS" -lt "$deadline" ]; do
  if ! kill -0 "$server_pid" 2>/dev/null; then
    break
  fi
  if "$venv/bin/python" - "$base_url/readyz" <<'EOF' 2>/dev/null; then
import sys, urllib.request
with urllib.request.urlopen(sys.argv[1], timeout=2) as response:
    sys.exit(0 if response.status == 200 else 1)
EOF
    if [ -s "$DEV_DATA_DIR/api-key" ]; then ready=1; break; fi
  fi
  sleep 0.2
done
if [ -z "$ready" ]; then
  echo "upconfirm dev did not become ready within 60 s; the end of its log:" >&2
  tail -n 150 "$work/server.log" >&2
  exit 1
fi
api_key=$(tr -d ' \n' <"$DEV_DATA_DIR/api-key")
echo "upconfirm dev is ready"

export UPCONFIRM_BASE_URL="$base_url"
export UPCONFIRM_API_KEY="$api_key"
export UPCONFIRM_NAMESPACE=dev
export UPCONFIRM_BUCKET=dev
export UPCONFIRM_BIN="$work/upconfirm"

failed=0

echo
echo "== pytest: the Python SDK against the API"
pytest_status=0
timeout --kill-after=10 900 "$venv/bin/python" -m pytest -c tests/sdk/pytest.ini \
  --rootdir tests/sdk tests/sdk -v "$@" </dev/null || pytest_status=$?
if [ "$pytest_status" -ne 0 ]; then
  echo "pytest failed (exit $pytest_status)"
  failed=1
fi

schema_status=skipped
if [ -z "${SDK_SKIP_SCHEMA:-}" ]; then
  echo
  echo "== schemathesis: responses against $base_url/openapi.json"
  # Checks: every schemathesis 4 check that applies to this run:
  #   not_a_server_error, status_code_conformance, content_type_conformance,
  #   response_headers_conformance, response_schema_conformance: what the server answers
  #   matches its own document; negative_data_rejection: input the document forbids is
  #   refused; missing_required_header, ignored_auth: requests without the key are refused;
  #   unsupported_method, allow_header_conformance: 405 with an Allow header.
  # Not in the list:
  #   positive_data_acceptance: a request the document allows is still refused for what no
  #     JSON schema says: a state (an upload that is COMPLETED cannot be canceled, 400), a
  #     field the SDK's model declares that this service does not support (unique_key,
  #     collection_ids: 422 "not supported by this service"), a content_type that is not a
  #     MIME type (422);
  #   use_after_free, ensure_resource_availability: they judge the stateful phase, which
  #     follows links the document does not declare;
  #   object_level_authorization: needs a second tenant's key.
  # SDK_SCHEMA_CHECKS replaces the list (e.g. `all`).
  checks=${SDK_SCHEMA_CHECKS:-not_a_server_error,status_code_conformance,content_type_conformance,response_headers_conformance,response_schema_conformance,negative_data_rejection,missing_required_header,ignored_auth,unsupported_method,allow_header_conformance}
  schema_status=0
  started=$(date +%s)
  "$venv/bin/python" tests/sdk/schema_seed.py tests/sdk/schemathesis.toml "$work/schemathesis.toml" </dev/null ||
    schema_status=$?
  [ "$schema_status" -eq 0 ] &&
  timeout --kill-after=10 180 "$venv/bin/python" tests/sdk/schemathesis_cli.py --config-file "$work/schemathesis.toml" run \
    "$base_url/openapi.json" \
    -H "Authorization: Bearer $api_key" -H "X-Namespace: dev" \
    --checks "$checks" \
    --phases examples,coverage,fuzzing \
    --max-examples 30 --seed 20240601 --generation-deterministic \
    --request-timeout 20 --request-retries 2 --workers 1 --no-color \
    --report junit --report-junit-path "$work/schemathesis.xml" </dev/null 2>&1 |
    tee "$work/schemathesis.out" || schema_status=$?
  elapsed=$(( $(date +%s) - started ))
  if [ -f "$work/schemathesis.xml" ]; then
    cases=$(grep -Eo '[0-9]+ generated' "$work/schemathesis.out" | tail -n 1 | cut -d' ' -f1)
    "$venv/bin/python" - "$work/schemathesis.xml" "$checks" "$elapsed" "${cases:-?}" <<'EOF' || true
import sys
import xml.etree.ElementTree as ET
root = ET.parse(sys.argv[1]).getroot()
suites = [root] if root.tag == "testsuite" else root.findall("testsuite")
operations = sum(int(s.get("tests", 0)) for s in suites)
failures = sum(int(s.get("failures", 0)) + int(s.get("errors", 0)) for s in suites)
print(
    f"schemathesis: {sys.argv[4]} cases over {operations} operations, {failures} operations failing; "
    f"{sys.argv[3]} s; checks: {sys.argv[2]}"
)
EOF
  fi
  if [ "$schema_status" -eq 124 ] || [ "$schema_status" -eq 137 ]; then
    echo "schemathesis did not finish within 180 s"
  fi
  if [ "$schema_status" -ne 0 ]; then
    echo "schemathesis failed (exit $schema_status)"
    failed=1
  fi
fi

echo
echo "SDK suite: pytest exit $pytest_status, schemathesis exit $schema_status"
if [ "$failed" -ne 0 ]; then
  echo "--- server log: errors and warnings (first 40) ---"
  grep -E "ERROR|WARN|panicked" "$work/server.log" | head -n 40 || true
  echo "--- server log: last lines ---"
  tail -n 10 "$work/server.log"
fi
exit "$failed"
