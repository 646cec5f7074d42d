#!/usr/bin/env bash
# Starts a single-node garage S3 store in a fresh folder, with one bucket and one key, and
# prints the S3_* settings that reach it (as shell assignments). Stop it with: kill "$(cat <dir>/pid)".
# Usage: bench/garage.sh <dir> <s3-port>
set -euo pipefail
dir=$1
port=${2:-3900}
rpc_port=$((port + 1))
admin_port=$((port + 3))
rm -rf "$dir"
mkdir -p "$dir/meta" "$dir/data"
secret=$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')
cat > "$dir/garage.toml" <<TOML
metadata_dir = "$dir/meta"
data_dir = "$dir/data"
db_engine = "lmdb"
replication_factor = 1
# Objects are stored as sent: the benchmark's random bytes would not compress anyway.
compression_level = "none"
rpc_bind_addr = "127.0.0.1:$rpc_port"
rpc_public_addr = "127.0.0.1:$rpc_port"
rpc_secret = "$secret"

[s3_api]
s3_region = "garage"
api_bind_addr = "127.0.0.1:$port"
root_domain = ".s3.garage.localhost"

[admin]
api_bind_addr = "127.0.0.1:$admin_port"
TOML
g() { garage -c "$dir/garage.toml" "$@"; }
RUST_LOG=warn garage -c "$dir/garage.toml" server > "$dir/server.log" 2>&1 &
echo $! > "$dir/pid"
for _ in $(seq 1 100); do
  if g status > /dev/null 2>&1; then break; fi
  sleep 0.1
done
node=$(g node id -q | cut -d@ -f1)
g layout assign -z local -c 100G "$node" > /dev/null
g layout apply --version 1 > /dev/null
g bucket create upconfirm > /dev/null
key=$(g key create upconfirm-bench)
g bucket allow --read --write --owner upconfirm --key upconfirm-bench > /dev/null
id=$(echo "$key" | awk '/Key ID/ {print $NF}')
sk=$(echo "$key" | awk '/Secret key/ {print $NF}')
cat <<ENV
S3_ENDPOINT=http://127.0.0.1:$port
S3_REGION=garage
S3_BUCKET=upconfirm
S3_ACCESS_KEY_ID=$id
S3_SECRET_ACCESS_KEY=$sk
S3_FORCE_PATH_STYLE=true
ENV
