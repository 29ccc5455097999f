#!/usr/bin/env bash
# Local Prefect stack for Primer: a Prefect server (SQLite) on loopback, a process work pool + worker, and
# every deployment of deployments/prefect.yaml.
#
#   scripts/stack.sh up       start (idempotent: starts what is not running, re-deploys), prints the UI URL
#   scripts/stack.sh down     stop the worker, then the server (SIGTERM to each process group, then SIGKILL)
#   scripts/stack.sh status   what runs; exit 0 when server and worker are up, 3 otherwise
#   scripts/stack.sh env      `export` lines for the Prefect CLI: eval "$(scripts/stack.sh env)"
#   scripts/stack.sh logs     tail the logs
#
# State lives under $PRIMER_STACK_DIR (default ./.primer/stack): prefect-home/ (PREFECT_HOME, SQLite
# database), logs/, *.pid, stack.env. Settings (environment):
#   PRIMER_STACK_PORT (4200)   PRIMER_STACK_POOL (primer-cpu)   PRIMER_STORE_ROOT (./artifacts)
#   PRIMER_STORE_ENDPOINT_URL  (S3-compatible endpoint for an s3:// store root; keys come from the environment)
#   PRIMER_PREFECT_FILE (deployments/prefect.yaml)   PRIMER_STACK_TIMEOUT (seconds to wait, 240)
#   PRIMER_STACK_DEPLOY ("all", "none" or space-separated flow/deployment names)
# The worker (and every flow run it starts) inherits this shell's environment: that is where store keys go.
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD
STACK_DIR=${PRIMER_STACK_DIR:-$REPO/.primer/stack}
mkdir -p "$STACK_DIR"
STACK_DIR=$(cd "$STACK_DIR" && pwd)
LOGS=$STACK_DIR/logs
# A running stack keeps the port it started with.
if [ -f "$STACK_DIR/stack.env" ] && [ -z "${PRIMER_STACK_PORT:-}" ]; then
  PRIMER_STACK_PORT=$(sed -n 's/^PRIMER_STACK_PORT=//p' "$STACK_DIR/stack.env")
fi
PORT=${PRIMER_STACK_PORT:-4200}
POOL=${PRIMER_STACK_POOL:-primer-cpu}
# Deployments for small/phi1 target this pool; it is created here so they deploy, and their runs wait for
# a worker on a GPU machine (`prefect worker start --pool primer-gpu`, or infra/docker-compose.yml).
GPU_POOL=${PRIMER_STACK_GPU_POOL:-primer-gpu}
STORE_ROOT=${PRIMER_STORE_ROOT:-$REPO/artifacts}
ENDPOINT=${PRIMER_STORE_ENDPOINT_URL:-}
PREFECT_FILE=${PRIMER_PREFECT_FILE:-deployments/prefect.yaml}
TIMEOUT=${PRIMER_STACK_TIMEOUT:-240}
DEPLOY=${PRIMER_STACK_DEPLOY:-all}
VENV_BIN=${PRIMER_VENV_BIN:-$REPO/.venv/bin}
PY=$VENV_BIN/python
PREFECT=$VENV_BIN/prefect

export PREFECT_HOME=$STACK_DIR/prefect-home
export PREFECT_API_URL=http://127.0.0.1:$PORT/api
export PREFECT_SERVER_ANALYTICS_ENABLED=false
export PREFECT_WORKER_QUERY_SECONDS=${PREFECT_WORKER_QUERY_SECONDS:-1}
export PREFECT_WORKER_PREFETCH_SECONDS=${PREFECT_WORKER_PREFETCH_SECONDS:-5}
export PREFECT_CLI_PROMPT=false
export TOKENIZERS_PARALLELISM=${TOKENIZERS_PARALLELISM:-true}
export PRIMER_REPO=$REPO PRIMER_STORE_ROOT=$STORE_ROOT
export PYTHONPATH=$REPO${PYTHONPATH:+:$PYTHONPATH}

say() { printf 'stack: %s\n' "$*"; }
alive() { [ -f "$STACK_DIR/$1.pid" ] && kill -0 "$(cat "$STACK_DIR/$1.pid")" 2>/dev/null; }
healthy() { "$PY" - "$PREFECT_API_URL" <<'EOF' 2>/dev/null
import sys, urllib.request
with urllib.request.urlopen(sys.argv[1] + "/health", timeout=20) as r:
    sys.exit(0 if r.status == 200 else 1)
EOF
}

start_bg() {  # name, command...: own process group (set -m) so SIGTERM/SIGINT reach it and its children
  local name=$1; shift
  set -m
  nohup "$@" >>"$LOGS/$name.log" 2>&1 </dev/null &
  echo $! >"$STACK_DIR/$name.pid"
  set +m
}

stop_one() {  # name
  local name=$1 pid
  [ -f "$STACK_DIR/$name.pid" ] || return 0
  pid=$(cat "$STACK_DIR/$name.pid")
  if kill -0 "$pid" 2>/dev/null; then
    kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
    if kill -0 "$pid" 2>/dev/null; then
      say "$name did not stop in 20 s: SIGKILL"
      kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
    fi
    # Children of the group that outlived the leader (flow runs): TERM, then KILL.
    if pgrep -g "$pid" >/dev/null 2>&1; then
      kill -TERM -- "-$pid" 2>/dev/null || true; sleep 1; kill -KILL -- "-$pid" 2>/dev/null || true
    fi
    say "$name stopped (pid $pid)"
  fi
  rm -f "$STACK_DIR/$name.pid"
}

write_env() {
  cat >"$STACK_DIR/stack.env" <<EOF
PRIMER_STACK_PORT=$PORT
PRIMER_STACK_POOL=$POOL
PRIMER_STORE_ROOT=$STORE_ROOT
EOF
}

print_env() {
  printf 'export PREFECT_HOME=%q\nexport PREFECT_API_URL=%q\nexport PREFECT_SERVER_ANALYTICS_ENABLED=false\n' \
    "$PREFECT_HOME" "$PREFECT_API_URL"
}

deploy() {
  [ "$DEPLOY" = none ] && return 0
  if [ "$DEPLOY" = all ]; then
    say "deploying everything in $PREFECT_FILE"
    if "$PREFECT" --no-prompt deploy --all --prefect-file "$PREFECT_FILE" >>"$LOGS/deploy.log" 2>&1; then
      return 0
    fi
    # One broken flow must not keep the others off the server: deploy them one by one, report failures.
    say "deploy --all failed (see $LOGS/deploy.log); deploying one by one"
    DEPLOY=$("$PY" -m primer.prefect_setup deployment-names "$PREFECT_FILE" | tr '\n' ' ')
  fi
  local failed=""
  for name in $DEPLOY; do
    if ! "$PREFECT" --no-prompt deploy --name "$name" --prefect-file "$PREFECT_FILE" >>"$LOGS/deploy.log" 2>&1; then
      failed="$failed $name"
    fi
  done
  if [ -n "$failed" ]; then
    say "FAILED to deploy:$failed (see $LOGS/deploy.log)"
    return 1
  fi
}

up() {
  mkdir -p "$LOGS" "$PREFECT_HOME"
  if alive server; then
    say "server already running (pid $(cat "$STACK_DIR/server.pid"))"
  else
    say "starting Prefect server on 127.0.0.1:$PORT (SQLite under $PREFECT_HOME)"
    start_bg server "$PREFECT" server start --host 127.0.0.1 --port "$PORT"
  fi
  write_env
  local waited=0
  until healthy; do
    if ! alive server; then
      say "server exited; last log lines:"; tail -n 30 "$LOGS/server.log" >&2; return 1
    fi
    if [ "$waited" -ge "$TIMEOUT" ]; then
      say "server not healthy after ${TIMEOUT}s; last log lines:"; tail -n 30 "$LOGS/server.log" >&2; return 1
    fi
    sleep 1; waited=$((waited + 1))
  done
  say "server healthy after ~${waited}s"
  "$PY" -m primer.prefect_setup stack-init --pool "$POOL" --pool "$GPU_POOL" --store-root "$STORE_ROOT" \
    ${ENDPOINT:+--endpoint-url "$ENDPOINT"} | sed 's/^/stack: /'
  if alive worker; then
    say "worker already running (pid $(cat "$STACK_DIR/worker.pid"))"
  else
    say "starting process worker on pool $POOL"
    start_bg worker "$PREFECT" worker start --pool "$POOL" --type process --name "primer-worker-$(hostname)"
  fi
  local rc=0
  deploy || rc=$?
  say "UI: http://127.0.0.1:$PORT   (CLI: eval \"\$(scripts/stack.sh env)\")"
  return $rc
}

status() {
  local rc=0
  for name in server worker; do
    if alive "$name"; then say "$name running (pid $(cat "$STACK_DIR/$name.pid"))"; else say "$name not running"; rc=3; fi
  done
  if healthy; then say "API healthy at $PREFECT_API_URL"; else say "API not answering at $PREFECT_API_URL"; rc=3; fi
  return $rc
}

case "${1:-}" in
  up) up ;;
  down) stop_one worker; stop_one server ;;
  status) status ;;
  env) print_env ;;
  logs) tail -n "${2:-50}" "$LOGS"/*.log ;;
  *) echo "usage: scripts/stack.sh up|down|status|env|logs" >&2; exit 2 ;;
esac
