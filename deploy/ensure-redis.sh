#!/usr/bin/env bash
# Make sure `redis-server` is on PATH: install it with apt-get when we can (root on Debian/Ubuntu),
# otherwise say exactly what to install and fail.
set -euo pipefail
command -v redis-server >/dev/null 2>&1 && exit 0
if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
  echo "nanoedit: redis-server not found; installing it with apt-get ..." >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null
  apt-get install -y -qq redis-server >/dev/null
  command -v redis-server >/dev/null 2>&1 && exit 0
fi
cat >&2 <<'MSG'
nanoedit: redis-server is required but not installed, and it could not be installed automatically.
Install it, then run the command again:
  Debian/Ubuntu:  sudo apt-get install redis-server
  Fedora/RHEL:    sudo dnf install redis
  macOS:          brew install redis
Or point nanoedit at an existing Redis:  export NANOEDIT_REDIS_URL=redis://host:6379/0
MSG
exit 1
