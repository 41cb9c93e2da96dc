#!/usr/bin/env bash
# Removes what interrupted test runs left behind: `wafleet_test_*` databases nobody is connected
# to, and idle queues of test prefixes (`wt-*`, no consumers). Leftover quorum queues hold broker
# file handles; enough of them and RabbitMQ stops accepting connections.
set -uo pipefail
psql_admin=(psql -h 127.0.0.1 -U postgres -d postgres -Atq)
if command -v psql >/dev/null; then
  for db in $("${psql_admin[@]}" -c "SELECT datname FROM pg_database d WHERE datname LIKE 'wafleet\_test\_%'
      AND NOT EXISTS (SELECT 1 FROM pg_stat_activity a WHERE a.datname = d.datname)" 2>/dev/null); do
    "${psql_admin[@]}" -c "DROP DATABASE IF EXISTS \"$db\"" >/dev/null 2>&1 || true
  done
fi
if command -v rabbitmqctl >/dev/null && rabbitmqctl -q status >/dev/null 2>&1; then
  rabbitmqctl -q list_queues name consumers 2>/dev/null | awk '$1 ~ /^wt-/ && $2 == 0 {print $1}' |
    xargs -r -P 4 -n 1 rabbitmqctl -q delete_queue >/dev/null 2>&1 || true
fi
exit 0
