#!/usr/bin/env bash
# Makes sure the local PostgreSQL and RabbitMQ that upconfirm's dev run and tests use are up:
# installs them (and the tools the tests call) from Debian's packages when missing, starts them
# when stopped, waits until ready.
set -euo pipefail

as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

pg_ready() { pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; }
rabbit_ready() { (exec 3<>/dev/tcp/127.0.0.1/5672) 2>/dev/null; }

if ! command -v pg_ctlcluster >/dev/null 2>&1; then
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
fi
if ! command -v rabbitmq-server >/dev/null 2>&1; then
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq rabbitmq-server >/dev/null
fi

# The chaos suite's network cut runs a worker in a network namespace (iproute2's `ip`) and
# asks it for readiness from inside with curl.
for tool in ip:iproute2 curl:curl; do
  if ! command -v "${tool%%:*}" >/dev/null 2>&1; then
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${tool##*:}" >/dev/null
  fi
done

if ! pg_ready; then
  version=$(ls /etc/postgresql | sort -V | tail -n 1)
  as_root pg_ctlcluster --skip-systemctl-redirect "$version" main start || true
fi
if ! rabbit_ready; then
  as_root rabbitmq-server -detached || true
fi

for _ in $(seq 1 60); do
  if pg_ready && rabbit_ready; then
    break
  fi
  sleep 1
done
pg_ready || { echo "PostgreSQL is not answering on 127.0.0.1:5432" >&2; exit 1; }
rabbit_ready || { echo "RabbitMQ is not answering on 127.0.0.1:5672" >&2; exit 1; }

# Tests and `upconfirm dev` connect as postgres over TCP without a password.
if ! psql -h 127.0.0.1 -U postgres -d postgres -Atc 'SELECT 1' >/dev/null 2>&1; then
  echo "PostgreSQL on 127.0.0.1 must accept the postgres user without a password (trust), or set DATABASE_URL" >&2
  exit 1
fi
echo "PostgreSQL and RabbitMQ are ready"
