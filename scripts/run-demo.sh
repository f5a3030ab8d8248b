#!/usr/bin/env bash
# `make run`: a Temporal dev server (unless one already answers), the schema,
# the search attributes, a worker and the demo rollout, all on this machine.
# Ctrl-C stops everything this script started; its state stays in .data/ so
# a second run works and the Web UI keeps the earlier runs' workflows.
set -euo pipefail
cd "$(dirname "$0")/.."

export TEMPORAL_ADDRESS="${TEMPORAL_ADDRESS:-localhost:7233}"
ui_url="http://localhost:8233"
mkdir -p .data

started=()
stop_started() {
  trap - EXIT INT TERM
  for pid in "${started[@]}"; do
    kill -TERM "$pid" 2>/dev/null || true
  done
  for pid in "${started[@]}"; do
    wait "$pid" 2>/dev/null || true
  done
}
trap stop_started EXIT
trap 'echo; echo "stopping..."; exit 130' INT TERM

# wait_for DESCRIPTION SECONDS COMMAND...: poll until COMMAND succeeds.
wait_for() {
  local what=$1 seconds=$2
  shift 2
  local deadline=$((SECONDS + seconds))
  until "$@" >/dev/null 2>&1; do
    if ((SECONDS >= deadline)); then
      echo "$what did not come up within ${seconds}s" >&2
      return 1
    fi
    sleep 0.5
  done
}

server_healthy() { bin/temporal operator cluster health --address "$TEMPORAL_ADDRESS"; }

if server_healthy >/dev/null 2>&1; then
  echo "using the Temporal server already answering at $TEMPORAL_ADDRESS"
else
  echo "starting the Temporal dev server (log: .data/temporal.log)"
  bin/temporal server start-dev --ui-port 8233 --db-filename .data/temporal.db \
    --log-level warn >.data/temporal.log 2>&1 &
  started+=($!)
  if ! wait_for "the Temporal dev server" 60 server_healthy; then
    tail -n 20 .data/temporal.log >&2
    exit 1
  fi
fi

bin/starter migrate --create-database
bin/starter setup

# The worker signs the emails' action links and the portal checks them with
# the same key; it is kept in .data/ so links of an earlier run still work.
if [ -z "${PORTAL_SECRET:-}" ]; then
  [ -s .data/portal-secret ] || head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' >.data/portal-secret
  PORTAL_SECRET=$(cat .data/portal-secret)
fi
export PORTAL_SECRET
export PORTAL_ADDR="${PORTAL_ADDR:-127.0.0.1:8080}"
export PORTAL_BASE_URL="${PORTAL_BASE_URL:-http://$PORTAL_ADDR}"

# Admin actions are signed: the demo's starter signs with a key the worker
# trusts. The pair is made once and kept in .data/ (README, Signing keys),
# so a starter run by hand can source it and approve too.
keys=.data/action-keys.env
if [ -z "${ACTION_SIGNING_KEY:-}" ]; then
  if [ ! -s "$keys" ]; then
    (umask 077 && bin/starter keys generate --id "demo-$(date -u +%Y%m%d)" >"$keys")
  fi
  set -a
  # shellcheck source=/dev/null
  . "$keys"
  set +a
  echo "signing admin actions with the key in $keys (source it to use bin/starter approve)"
fi

# Each run gets its own instance IDs, so workflow IDs of earlier runs (kept
# in .data/temporal.db) never collide with this one's.
run_id=$(date -u +%H%M%S)
simulated_failures=$(bin/starter demo --run "$run_id" --print-simulated-failures)

echo "starting the worker (log: .data/worker.log)"
SIMULATED_FAILURES="$simulated_failures" SIMULATED_DURATION="${SIMULATED_DURATION:-15s}" \
  METRICS_ADDR="${METRICS_ADDR:-127.0.0.1:9090}" \
  bin/worker >.data/worker.log 2>&1 &
worker_pid=$!
started+=($worker_pid)
# The worker logs "Worker polling" once per task queue when it is ready; if
# it exits first (a port in use, a bad setting), say why instead of running
# the demo with nobody to execute it.
deadline=$((SECONDS + 120))
until [ "$(grep -c 'Worker polling' .data/worker.log)" -ge 2 ]; do
  if ! kill -0 "$worker_pid" 2>/dev/null || ((SECONDS >= deadline)); then
    echo "the worker did not start; the end of .data/worker.log:" >&2
    tail -n 5 .data/worker.log >&2
    exit 1
  fi
  sleep 0.5
done

echo "starting the admins' portal (log: .data/portal.log)"
# The demo mailbox shows the emails outbox mode stored, links and all.
PORTAL_MAILBOX=true bin/starter portal >.data/portal.log 2>&1 &
portal_pid=$!
started+=($portal_pid)
portal_up() { curl -fsS "$PORTAL_BASE_URL/healthz"; }
if ! wait_for "the portal" 60 portal_up; then
  tail -n 5 .data/portal.log >&2
  exit 1
fi
echo "The admins' portal:    $PORTAL_BASE_URL"
echo "The demo's emails:     $PORTAL_BASE_URL/mailbox (open one as an admin and click Approve)"

bin/starter demo --run "$run_id"

if [ -t 0 ]; then
  echo
  echo "The Web UI stays up at $ui_url and the portal at $PORTAL_BASE_URL; Ctrl-C stops the server, the worker and the portal."
  wait "${started[@]}"
fi
