#!/usr/bin/env bash
# A Temporal cluster on this machine, run as separate processes the way a
# production cluster is: frontend, matching, the worker service and two
# history hosts sharing 8 shards, persisting to the local Postgres (default
# and advanced visibility), plus the Web UI. `make cluster` builds the
# binaries into CLUSTER_BIN and runs `start`.
#
#   scripts/cluster.sh start            fresh databases, every process, the
#                                       default namespace, svcupdate's search attributes
#   scripts/cluster.sh stop             stop every process started here
#   scripts/cluster.sh kill SERVICE     SIGKILL one process (a host crash)
#   scripts/cluster.sh restart SERVICE  start one process again
#   scripts/cluster.sh status           which processes run
#   scripts/cluster.sh shards           when each history host acquired which
#                                       shard (from the logs; for a failed test)
#
# SERVICE is one of: history1 history2 matching frontend worker ui.
# State (pid files, logs) lives in .data/cluster/.
set -euo pipefail
cd "$(dirname "$0")/.."

state=.data/cluster
address=127.0.0.1:7633
ui_port=8633
services=(history1 history2 matching frontend worker ui)
# Seconds to wait for the cluster to answer; a first start on a busy
# machine is slow.
start_timeout=${CLUSTER_START_TIMEOUT:-180}

usage() {
  echo "usage: scripts/cluster.sh start|stop|status|shards|kill SERVICE|restart SERVICE (SERVICE: ${services[*]})" >&2
  exit 2
}

bin_dir() {
  echo "${CLUSTER_BIN:?CLUSTER_BIN must name the directory of the cluster binaries (make cluster sets it)}"
}

# service_ports SERVICE: the ports of one server process as variables of
# the server's config template. They keep clear of a dev server (7233,
# 8233) and of the server's defaults; every process needs the frontend's.
service_ports() {
  local grpc membership role
  case $1 in
  frontend) grpc=7633 membership=6633 ;;
  history1) grpc=7634 membership=6634 ;;
  history2) grpc=7654 membership=6654 ;;
  matching) grpc=7635 membership=6635 ;;
  worker) grpc=7639 membership=6639 ;;
  esac
  role=$(tr a-z A-Z <<<"${1%[0-9]}")
  echo "FRONTEND_GRPC_PORT=7633 FRONTEND_HTTP_PORT=7643 FRONTEND_MEMBERSHIP_PORT=6633 ${role}_GRPC_PORT=$grpc ${role}_MEMBERSHIP_PORT=$membership"
}

running() {
  local pid_file=$state/$1.pid
  [[ -f $pid_file ]] && kill -0 "$(cat "$pid_file")" 2>/dev/null
}

# start_service SERVICE: start one process in a session of its own (so a
# Ctrl-C at the terminal that ran make does not reach it).
start_service() {
  local name=$1 bin
  bin=$(bin_dir)
  if running "$name"; then
    echo "$name already runs (pid $(cat "$state/$name.pid"))" >&2
    return 0
  fi
  if [[ $name == ui ]]; then
    TEMPORAL_ADDRESS=$address TEMPORAL_UI_PORT=$ui_port \
      setsid "$bin/ui/server" --root deploy/temporal --config ui --env cluster start \
      >>"$state/ui.log" 2>&1 </dev/null &
  else
    (
      # The same settings docker-compose.yml gives its server.
      set -a
      . deploy/temporal/server.env
      set +a
      # Few connections per process: the local Postgres (max_connections
      # 100 by default) also serves the tests' databases.
      # shellcheck disable=SC2046 # service_ports prints NAME=value words
      exec env POSTGRES_SEEDS=127.0.0.1 BIND_ON_IP=127.0.0.1 TEMPORAL_BROADCAST_ADDRESS=127.0.0.1 \
        SQL_MAX_CONNS=4 SQL_MAX_IDLE_CONNS=2 SQL_VIS_MAX_CONNS=2 SQL_VIS_MAX_IDLE_CONNS=1 \
        DYNAMIC_CONFIG_FILE_PATH="$PWD/deploy/temporal/dynamicconfig.yaml" \
        $(service_ports "$name") \
        setsid "$bin/server" start --service "${name%[0-9]}"
    ) >>"$state/$name.log" 2>&1 </dev/null &
  fi
  echo $! >"$state/$name.pid"
}

stop_service() {
  local name=$1 signal=${2:-TERM} pid_file=$state/$1.pid
  if running "$name"; then
    kill "-$signal" "$(cat "$pid_file")"
    local deadline=$((SECONDS + 30))
    while running "$name" && ((SECONDS < deadline)); do sleep 0.2; done
    if running "$name"; then kill -KILL "$(cat "$pid_file")"; fi
  fi
  rm -f "$pid_file"
}

check_service() {
  local name
  for name in "${services[@]}"; do [[ $name == "$1" ]] && return 0; done
  echo "unknown service \"$1\": want one of ${services[*]}" >&2
  exit 2
}

# wait_for DESCRIPTION COMMAND...: poll until COMMAND succeeds.
wait_for() {
  local what=$1
  shift
  local deadline=$((SECONDS + start_timeout))
  until "$@" >/dev/null 2>&1; do
    if ((SECONDS >= deadline)); then
      echo "$what: not done within ${start_timeout}s; logs in $state/" >&2
      return 1
    fi
    sleep 1
  done
}

# Each history host has joined the ring once it owns shards.
history_hosts_own_shards() {
  grep -q "Acquired shard" "$state/history1.log" && grep -q "Acquired shard" "$state/history2.log"
}

create_default_namespace() {
  bin/temporal operator namespace describe --address "$address" --namespace default ||
    bin/temporal operator namespace create --address "$address" --namespace default
}

start() {
  local began=$SECONDS name bin
  bin=$(bin_dir)
  stop
  mkdir -p "$state"
  rm -f "$state"/*.log
  # Fresh databases, then the schema job docker-compose.yml runs too.
  if ! (
    set -a
    . deploy/temporal/server.env
    set +a
    for database in "$DBNAME" "$VISIBILITY_DBNAME"; do
      psql -h 127.0.0.1 -U "$POSTGRES_USER" -d postgres -qc "DROP DATABASE IF EXISTS $database WITH (FORCE)"
    done
    POSTGRES_SEEDS=127.0.0.1 SQL_TOOL=$bin/sql deploy/temporal/setup-schema.sh
  ) >"$state/schema.log" 2>&1; then
    cat "$state/schema.log" >&2
    exit 1
  fi
  # The first process initializes the cluster's metadata in the fresh
  # database; processes racing it fail, so the others wait for it.
  start_service history1
  wait_for "history1 owning shards" grep -q "Acquired shard" "$state/history1.log"
  for name in "${services[@]:1}"; do start_service "$name"; done
  wait_for "the frontend at $address answering" bin/temporal operator cluster health --address "$address"
  wait_for "both history hosts owning shards" history_hosts_own_shards
  # The default namespace, as the dev server and compose have it.
  wait_for "namespace default" create_default_namespace
  # setup binds the namespace to svcupdate's database (DATABASE_URL), so
  # that database must exist first.
  bin/starter migrate --create-database
  TEMPORAL_ADDRESS=$address bin/starter setup
  wait_for "the Web UI on :$ui_port" curl -fsS -o /dev/null "http://127.0.0.1:$ui_port/"
  for name in "${services[@]}"; do
    if ! running "$name"; then
      echo "$name stopped; the end of $state/$name.log:" >&2
      tail -5 "$state/$name.log" >&2
      exit 1
    fi
  done
  echo "cluster up in $((SECONDS - began))s: Temporal at $address, Web UI at http://127.0.0.1:$ui_port, logs in $state/"
}

# shards: every shard acquisition of the history hosts, oldest first, as
# "TIME HOST shard N", so a test that failed on the cluster shows whether
# shards moved while it ran.
shards() {
  local host
  for host in history1 history2; do
    [[ -f $state/$host.log ]] || continue
    sed -n 's/.*"ts":"\([^"]*\)","msg":"Acquired shard","shard-id":\([0-9]*\).*/\1 '"$host"' shard \2/p' "$state/$host.log"
  done | sort
}

stop() {
  local i
  # Reverse start order: the frontend stops taking calls first.
  for ((i = ${#services[@]} - 1; i >= 0; i--)); do
    stop_service "${services[i]}"
  done
}

case ${1:-} in
start)
  # A start that fails halfway leaves no server processes behind.
  trap 'code=$?; if ((code != 0)); then echo "the cluster did not start; stopping what did" >&2; stop; fi' EXIT
  start
  trap - EXIT
  ;;
stop) stop ;;
shards) shards ;;
status)
  for name in "${services[@]}"; do
    if running "$name"; then echo "$name running (pid $(cat "$state/$name.pid"))"; else echo "$name stopped"; fi
  done
  ;;
kill)
  [[ $# == 2 ]] || usage
  check_service "$2"
  stop_service "$2" KILL
  ;;
restart)
  [[ $# == 2 ]] || usage
  check_service "$2"
  mkdir -p "$state"
  start_service "$2"
  ;;
*) usage ;;
esac
