#!/usr/bin/env bash
# Makes sure RabbitMQ (127.0.0.1:5672) and PostgreSQL (127.0.0.1:5432) are up: starts the local
# ones if they are installed, else the ones in deploy/compose.yaml where a Docker engine runs,
# else says what is missing. Idempotent: does nothing when both already answer.
set -uo pipefail

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

wait_for() { # name port seconds
  local i
  for ((i = 0; i < $3 * 2; i++)); do
    port_open "$2" && return 0
    sleep 0.5
  done
  echo "services: $1 did not come up on 127.0.0.1:$2 within $3 s" >&2
  return 1
}

pg_up() { port_open 5432 && { ! command -v pg_isready >/dev/null || pg_isready -q -h 127.0.0.1 -p 5432; }; }
rabbit_up() { port_open 5672; }

if pg_up && rabbit_up; then
  echo "services: PostgreSQL and RabbitMQ are up"
  exit 0
fi

missing=()
if ! pg_up; then
  if command -v pg_ctlcluster >/dev/null && [ -d /etc/postgresql ]; then
    echo "services: starting the local PostgreSQL"
    pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | sort -V | tail -n1)" main start || true
    wait_for PostgreSQL 5432 30 || exit 1
  else
    missing+=(postgres)
  fi
fi
if ! rabbit_up; then
  if command -v rabbitmq-server >/dev/null; then
    echo "services: starting the local RabbitMQ"
    rabbitmq-server -detached || true
    wait_for RabbitMQ 5672 60 || exit 1
  else
    missing+=(rabbitmq)
  fi
fi

if [ ${#missing[@]} -gt 0 ]; then
  if command -v docker >/dev/null && docker info >/dev/null 2>&1; then
    echo "services: starting ${missing[*]} from deploy/compose.yaml"
    docker compose -f "$(dirname "$0")/../deploy/compose.yaml" up -d --wait "${missing[@]}" || exit 1
  else
    echo "services: not running and cannot be started here: ${missing[*]}" >&2
    echo "  install them (Debian: apt-get install postgresql rabbitmq-server) or run a Docker engine" >&2
    echo "  (docker compose -f deploy/compose.yaml up -d postgres rabbitmq), or point" >&2
    echo "  WAFLEET_DATABASE_URL / WAFLEET_AMQP_URL at running ones." >&2
    exit 1
  fi
fi
echo "services: PostgreSQL and RabbitMQ are up"
