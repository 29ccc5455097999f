#!/usr/bin/env bash
# Local Prefect stack for Primer: a Prefect server (SQLite) on loopback, a process work pool + worker, and
# every deployment of deployments/prefect.yaml.
#
#   scripts/stack.sh up       start (idempotent: starts what is not running, re-deploys), prints the UI URL
#   scripts/stack.sh up --postgres   the same on PostgreSQL, as teams run Prefect: a cluster initdb'd once
#                             for this stack dir, started on a loopback port
#   scripts/stack.sh down     stop the worker, then the server, then PostgreSQL (SIGTERM to each process
#                             group, SIGKILL after 20 s); `down --purge` also deletes the PostgreSQL cluster
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
#   PRIMER_STACK_DB (sqlite | postgres; `up --postgres` sets it)   PRIMER_STACK_PG_PORT (the API port + 1)
#   PRIMER_STACK_PG_USER (the OS user owning the cluster when this runs as root: postgres, else nobody)
#   PRIMER_STACK_GPU_POOL_TYPE (process; kubernetes with infra/k8s/gpu-job-template.json). A pool that
#   already exists keeps its type: nothing is re-created over it.
# The worker (and every flow run it starts) inherits this shell's environment: that is where store keys go,
# and PRIMER_STORE_ROOT is how deployed runs find the store (primer.config reads it).
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
if [ -f "$STACK_DIR/stack.env" ] && [ -z "${PRIMER_STACK_DB:-}" ]; then
  PRIMER_STACK_DB=$(sed -n 's/^PRIMER_STACK_DB=//p' "$STACK_DIR/stack.env")
fi
ACTION=${1:-}
if [ "${2:-}" = "--postgres" ]; then PRIMER_STACK_DB=postgres; fi
if [ "${2:-}" = "--purge" ]; then PURGE=1; fi
PORT=${PRIMER_STACK_PORT:-4200}
DB=${PRIMER_STACK_DB:-sqlite}
PG_PORT=${PRIMER_STACK_PG_PORT:-$((PORT + 1))}
POOL=${PRIMER_STACK_POOL:-primer-cpu}
# Deployments for small/phi1 target this pool; it is created here so they deploy, and their runs wait for
# a worker on a GPU machine (`prefect worker start --pool primer-gpu`, or infra/docker-compose.yml).
GPU_POOL=${PRIMER_STACK_GPU_POOL:-primer-gpu}
GPU_POOL_TYPE=${PRIMER_STACK_GPU_POOL_TYPE:-process}
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
# PRIMER_REPO: where the deployments' pull step (primer.deploy_steps.checkout) finds the code on this machine.
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
  # SIGINT back to its default first: a shell started in the background (`stack.sh up &`, CI steps, nohup
  # wrappers) hands its children SIGINT *ignored*, and `prefect worker` stops on SIGTERM by sending itself
  # SIGINT: ignored, it never stopped and `down` had to SIGKILL it. Bash cannot reset a signal ignored at
  # its own start, so a one-line exec wrapper does it.
  nohup "$PY" -c 'import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_DFL); os.execvp(sys.argv[1], sys.argv[1:])' \
    "$@" >>"$LOGS/$name.log" 2>&1 </dev/null &
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
PRIMER_STACK_DB=$DB
EOF
}

# ---------------------------------------------------------------- PostgreSQL (up --postgres)
# PostgreSQL refuses to run as root: as root the cluster belongs to an unprivileged user and lives in a tmp
# dir of its own (named in the stack dir: the stack dir may sit under a 0700 parent); else under the stack dir.
pg_bin() {  # name: a PostgreSQL program from PATH or Debian's versioned directory
  command -v "$1" 2>/dev/null && return 0
  ls -d /usr/lib/postgresql/*/bin/"$1" 2>/dev/null | sort -V | tail -n 1 | grep .
}
pg_user() {
  [ "$(id -u)" -eq 0 ] || return 0
  if [ -n "${PRIMER_STACK_PG_USER:-}" ]; then echo "$PRIMER_STACK_PG_USER"
  elif id -u postgres >/dev/null 2>&1; then echo postgres
  else echo nobody; fi
}
as_pg() {  # command...: run as the cluster's owner
  local user; user=$(pg_user)
  if [ -n "$user" ]; then runuser -u "$user" -- "$@"; else "$@"; fi
}
pg_dir() {
  if [ -f "$STACK_DIR/pg-dir" ]; then cat "$STACK_DIR/pg-dir"; return; fi
  local dir user; user=$(pg_user)
  if [ -n "$user" ]; then
    dir=$(mktemp -d "${TMPDIR:-/tmp}/primer-stack-pg.XXXXXX"); chown "$user" "$dir"
  else
    dir=$STACK_DIR/postgres; mkdir -p "$dir"
  fi
  chmod 700 "$dir"; echo "$dir" >"$STACK_DIR/pg-dir"; echo "$dir"
}
pg_up() {
  local initdb pg_ctl dir
  initdb=$(pg_bin initdb || true); pg_ctl=$(pg_bin pg_ctl || true)
  if [ -z "$initdb" ] || [ -z "$pg_ctl" ]; then
    say "--postgres needs PostgreSQL's initdb and pg_ctl: apt-get install -y postgresql (see scripts/ci-system-deps.sh)"
    return 1
  fi
  dir=$(pg_dir)
  if [ ! -f "$dir/data/PG_VERSION" ]; then
    # The password lives in the stack dir (mode 600) and in the server's environment, nowhere else.
    ( umask 077; "$PY" -c 'import secrets; print(secrets.token_urlsafe(24))' >"$STACK_DIR/pg-password" )
    as_pg bash -c 'umask 077; cat >"$1/pwfile"' _ "$dir" <"$STACK_DIR/pg-password"
    say "initdb: PostgreSQL cluster in $dir/data (owner $(pg_user || true))"
    # unix socket (in the cluster's own 0700 dir): trust; TCP on loopback: password (scram).
    if ! as_pg "$initdb" -D "$dir/data" -U prefect --pwfile="$dir/pwfile" --auth-local=trust \
         --auth-host=scram-sha-256 -E UTF8 >>"$LOGS/postgres-init.log" 2>&1; then
      as_pg rm -f "$dir/pwfile"; say "initdb failed:"; tail -n 20 "$LOGS/postgres-init.log" >&2
      return 1
    fi
    as_pg rm -f "$dir/pwfile"
  fi
  if ! as_pg "$pg_ctl" -D "$dir/data" status >/dev/null 2>&1; then
    say "starting PostgreSQL on 127.0.0.1:$PG_PORT"
    if ! as_pg "$pg_ctl" -D "$dir/data" -l "$dir/postgres.log" -w -t 60 \
         -o "-p $PG_PORT -k $dir -c listen_addresses=127.0.0.1" start >/dev/null; then
      say "PostgreSQL did not start; last log lines:"; as_pg tail -n 30 "$dir/postgres.log" >&2; return 1
    fi
  fi
  local bin; bin=$(dirname "$(readlink -f "$pg_ctl")")  # psql/createdb sit beside the real pg_ctl
  if ! as_pg "$bin/psql" -h "$dir" -p "$PG_PORT" -U prefect -d postgres -tAc \
       "select 1 from pg_database where datname = 'prefect'" | grep -q 1; then
    as_pg "$bin/createdb" -h "$dir" -p "$PG_PORT" -U prefect prefect
  fi
  echo "$PG_PORT" >"$STACK_DIR/pg-port"
}
pg_running() {
  [ -f "$STACK_DIR/pg-dir" ] || return 1
  local pg_ctl; pg_ctl=$(pg_bin pg_ctl || true)
  [ -n "$pg_ctl" ] && as_pg "$pg_ctl" -D "$(cat "$STACK_DIR/pg-dir")/data" status >/dev/null 2>&1
}
pg_down() {
  if pg_running; then
    as_pg "$(pg_bin pg_ctl)" -D "$(cat "$STACK_DIR/pg-dir")/data" -m fast -w -t 60 stop >/dev/null
    say "postgres stopped"
  fi
  if [ "${PURGE:-}" = 1 ] && [ -f "$STACK_DIR/pg-dir" ]; then  # down --purge: the database goes too
    rm -rf "$(cat "$STACK_DIR/pg-dir")"; rm -f "$STACK_DIR/pg-dir" "$STACK_DIR/pg-password" "$STACK_DIR/pg-port"
    say "postgres cluster removed"
  fi
}
pg_url() {  # the server's database URL: it carries the password, so only ever the server's environment
  printf 'postgresql+asyncpg://prefect:%s@127.0.0.1:%s/prefect' "$(cat "$STACK_DIR/pg-password")" \
    "$(cat "$STACK_DIR/pg-port")"
}

ensure_gpu_pool() {  # the GPU pool as the type its worker needs; one that exists (any type) is left alone
  local existing
  if existing=$("$PY" - "$GPU_POOL" <<'PY' 2>/dev/null
import sys
from prefect.client.orchestration import get_client
with get_client(sync_client=True) as c:
    print(c.read_work_pool(sys.argv[1]).type)
PY
  ); then
    say "work pool $GPU_POOL: exists (type $existing)"
    return 0
  fi
  local template=()
  if [ "$GPU_POOL_TYPE" = kubernetes ]; then template=(--base-job-template "$REPO/infra/k8s/gpu-job-template.json"); fi
  if "$PREFECT" work-pool create "$GPU_POOL" --type "$GPU_POOL_TYPE" "${template[@]}" >>"$LOGS/deploy.log" 2>&1; then
    say "work pool $GPU_POOL: created (type $GPU_POOL_TYPE)"
  else
    say "FAILED to create work pool $GPU_POOL (type $GPU_POOL_TYPE); see $LOGS/deploy.log"; return 1
  fi
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
  if [ "$DB" = postgres ]; then pg_up; fi
  if alive server; then
    say "server already running (pid $(cat "$STACK_DIR/server.pid"))"
  elif [ "$DB" = postgres ]; then
    say "starting Prefect server on 127.0.0.1:$PORT (PostgreSQL on 127.0.0.1:$PG_PORT)"
    ( export PREFECT_API_DATABASE_CONNECTION_URL; PREFECT_API_DATABASE_CONNECTION_URL=$(pg_url)
      start_bg server "$PREFECT" server start --host 127.0.0.1 --port "$PORT" )
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
  "$PY" -m primer.prefect_setup stack-init --pool "$POOL" --store-root "$STORE_ROOT" \
    ${ENDPOINT:+--endpoint-url "$ENDPOINT"} | sed 's/^/stack: /'
  ensure_gpu_pool
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
  if [ "$DB" = postgres ]; then
    if pg_running; then say "postgres running (port $(cat "$STACK_DIR/pg-port"))"; else say "postgres not running"; rc=3; fi
  fi
  if healthy; then say "API healthy at $PREFECT_API_URL"; else say "API not answering at $PREFECT_API_URL"; rc=3; fi
  return $rc
}

case "$ACTION" in
  up) up ;;
  down) stop_one worker; stop_one server; pg_down ;;
  status) status ;;
  env) print_env ;;
  logs) tail -n "${2:-50}" "$LOGS"/*.log ;;
  *) echo "usage: scripts/stack.sh up [--postgres]|down [--purge]|status|env|logs" >&2; exit 2 ;;
esac
