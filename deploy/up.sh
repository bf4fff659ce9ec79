#!/usr/bin/env bash
# `make up`: run the whole service on the embedded default.
#   - a private redis-server (AOF everysec, noeviction, data under NANOEDIT_DATA_DIR/redis) unless
#     NANOEDIT_REDIS_URL is set;
#   - every Procfile process under supervisord (config written by deploy/supervise.py into
#     NANOEDIT_DATA_DIR/supervisor): a process that dies is restarted, the others keep running;
#     `supervisorctl -c "$NANOEDIT_DATA_DIR/supervisor/supervisord.conf" status` from another terminal;
#   - Ctrl-C stops everything (each program drains: SIGTERM, then SIGKILL after stopwaitsecs), the private
#     Redis last (it flushes its AOF on shutdown).
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/.venv/bin:$PATH"
export NANOEDIT_DATA_DIR="${NANOEDIT_DATA_DIR:-$PWD/var}"
mkdir -p "$NANOEDIT_DATA_DIR"
port="${NANOEDIT_PORT:-8000}"
host="${NANOEDIT_HOST:-127.0.0.1}"

port_busy() { python - "$1" <<'PY'
import socket, sys
s = socket.socket(); s.settimeout(0.5)
sys.exit(0 if s.connect_ex(("127.0.0.1", int(sys.argv[1]))) == 0 else 1)
PY
}

if port_busy "$port"; then
  echo "nanoedit: port $port is already in use. Stop what uses it, or run: NANOEDIT_PORT=8001 make up" >&2
  exit 1
fi
# Before touching the private Redis: a second `make up` on this data directory must not reuse (and later stop)
# the first one's Redis, nor overwrite its supervisord configuration. A crashed run's socket/pid file is removed.
python deploy/supervise.py check "$NANOEDIT_DATA_DIR"

redis_pid=""
cleanup() {
  trap - EXIT INT TERM
  if [ -n "$redis_pid" ] && kill -0 "$redis_pid" 2>/dev/null; then
    echo "nanoedit: stopping the private redis-server" >&2
    redis-cli -p "$redis_port" shutdown >/dev/null 2>&1 || kill "$redis_pid" 2>/dev/null || true
  fi
}

if [ -z "${NANOEDIT_REDIS_URL:-}" ]; then
  bash deploy/ensure-redis.sh
  redis_dir="$NANOEDIT_DATA_DIR/redis"
  mkdir -p "$redis_dir"
  redis_port="${NANOEDIT_REDIS_PORT:-6390}"
  pidfile="$redis_dir/redis.pid"
  if [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null && redis-cli -p "$redis_port" ping >/dev/null 2>&1; then
    echo "nanoedit: reusing the private redis-server already running on port $redis_port" >&2
  else
    if port_busy "$redis_port"; then
      echo "nanoedit: port $redis_port (private Redis) is in use by something else; set NANOEDIT_REDIS_PORT" >&2
      exit 1
    fi
    redis-server --bind 127.0.0.1 --port "$redis_port" --dir "$redis_dir" \
      --appendonly yes --appendfsync everysec --maxmemory-policy noeviction --save "" \
      --hash-max-listpack-value 1024 \
      --daemonize yes --pidfile "$pidfile" --logfile "$redis_dir/redis.log"
    for _ in $(seq 1 50); do redis-cli -p "$redis_port" ping >/dev/null 2>&1 && break; sleep 0.1; done
  fi
  redis_pid="$(cat "$pidfile")"
  trap cleanup EXIT INT TERM
  export NANOEDIT_REDIS_URL="redis://127.0.0.1:$redis_port/0"
  echo "nanoedit: private Redis at $NANOEDIT_REDIS_URL (AOF everysec, data in $redis_dir)" >&2
fi

# Fail fast on bad configuration, and say which provider is in use.
python -m shared.startup_banner
supervisor_conf="$(python deploy/supervise.py write "$NANOEDIT_DATA_DIR")"
echo "nanoedit: API at http://$host:$port  (try: curl http://$host:$port/v1)  — Ctrl-C stops everything" >&2
echo "nanoedit: processes supervised (restarted if they die); status: supervisorctl -c $supervisor_conf status" >&2
# supervisord in the background and waited for, so a signal to this script reaches it too (bash runs a trap only
# once its foreground child has exited); a terminal's Ctrl-C reaches both, supervisord shuts down once.
supervisor_pid=""
trap 'if [ -n "$supervisor_pid" ]; then kill -TERM "$supervisor_pid" 2>/dev/null || true; else exit 130; fi' INT TERM
supervisord -n -c "$supervisor_conf" &
supervisor_pid=$!
status=0
while kill -0 "$supervisor_pid" 2>/dev/null; do
  wait "$supervisor_pid" && status=0 || status=$?
done
exit "$status"   # the EXIT trap (cleanup) then stops the private Redis
