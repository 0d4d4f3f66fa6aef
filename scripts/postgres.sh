#!/usr/bin/env bash
# A PostgreSQL server for caseflow's tests and benchmarks, and for trying caseflow on several
# nodes: installs Debian's `postgresql` when it is missing, makes a cluster in a directory of its
# own (initdb), starts it on a free port on loopback, and prints a URL. A server this script
# started and that still runs is reused, so every test binary may call it.
#
#   scripts/postgres.sh start            start (or find) the server; prints its URL
#   scripts/postgres.sh database NAME    a new, empty database NAME (dropped first); prints its URL
#   scripts/postgres.sh stop             stop the server
#   scripts/postgres.sh standby PORT     a synchronous standby of the server on PORT: copied
#                                        (pg_basebackup), started, made the primary's synchronous
#                                        standby, and waited for until it is in sync; prints its URL
#   scripts/postgres.sh crash            kill -9 the server and every process of it (no shutdown)
#   scripts/postgres.sh promote          make this standby a primary
#   scripts/postgres.sh freeze | thaw    pause (SIGSTOP) the server and every process of it, its
#                                        connections left open; resume them (SIGCONT)
#   scripts/postgres.sh tls CERT KEY     serve TLS with this certificate and key, and accept
#                                        TLS connections only (from here on)
#
# CASEFLOW_PG_DIR chooses the directory (default /tmp/caseflow-postgres); the fault tests give
# each server of their own a directory, so that stopping it touches no other test.
set -euo pipefail

state=${CASEFLOW_PG_DIR:-/tmp/caseflow-postgres}
mkdir -p "$state"
exec 9>"$state/lock"
flock 9

find_bin() { ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1; }

bin=$(find_bin)
if [ -z "$bin" ] || [ ! -x "$bin/initdb" ]; then
    echo "postgres.sh: installing Debian's postgresql" >&2
    export DEBIAN_FRONTEND=noninteractive
    sudo=""
    [ "$(id -u)" = 0 ] || sudo=sudo
    # One apt-get at a time with the browser tests' installer (scripts/install-browser.sh).
    exec 8>/tmp/caseflow-apt.lock
    flock 8
    $sudo apt-get update -qq >&2
    # The package's own cluster is not used: if its start fails where there is no init
    # system, what was unpacked is all this script needs.
    $sudo apt-get -o DPkg::Lock::Timeout=300 install -y -qq --no-install-recommends postgresql postgresql-contrib >&2 ||
        echo "postgres.sh: apt-get reported a problem; going on with what it installed" >&2
    bin=$(find_bin)
    if [ -z "$bin" ] || [ ! -x "$bin/initdb" ]; then
        echo "postgres.sh: PostgreSQL could not be installed (apt-get install postgresql)" >&2
        exit 1
    fi
fi

# PostgreSQL refuses to run as root: as root, it runs as the package's `postgres` user.
as_owner() {
    if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

data="$state/data"
port_file="$state/port"

running() {
    [ -f "$port_file" ] && as_owner "$bin/pg_ctl" -D "$data" status >/dev/null 2>&1
}

url_of() { echo "postgres://caseflow@127.0.0.1:$(cat "$port_file")/$1"; }

start() {
    if running; then return; fi
    if [ ! -f "$data/PG_VERSION" ]; then
        rm -rf "$data"
        mkdir -p "$data" "$state/run"
        [ "$(id -u)" = 0 ] && chown postgres: "$data" "$state/run"
        as_owner "$bin/initdb" -D "$data" -U caseflow --auth=trust -E UTF8 --locale=C.UTF-8 >"$state/initdb.log" 2>&1 || {
            cat "$state/initdb.log" >&2
            exit 1
        }
    fi
    # The port it had, when it is still free (a restart keeps its URL), or a free one.
    local port
    port=$(python3 - "$(cat "$port_file" 2>/dev/null || echo 0)" <<'PY'
import socket, sys
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as PostgreSQL binds it
try:
    s.bind(("127.0.0.1", int(sys.argv[1])))
except OSError:
    s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])
PY
)
    # synchronous_commit and fsync stay on: an acknowledged write is on disk, as in production.
    # pg_stat_statements lets the benchmarks count round trips and statements per command.
    as_owner "$bin/pg_ctl" -D "$data" -l "$state/run/server.log" -w -t 60 start -o \
        "-p $port -k $state/run -c listen_addresses=127.0.0.1 -c max_connections=300 \
         -c shared_preload_libraries=pg_stat_statements" </dev/null >/dev/null 2>>"$state/start.log" 9>&- 8>&- || {
        tail -20 "$state/run/server.log" >&2
        exit 1
    }
    echo "$port" >"$port_file"
}

case "${1:-start}" in
start)
    start
    url_of postgres
    ;;
database)
    name=${2:?"usage: postgres.sh database NAME"}
    start
    port=$(cat "$port_file")
    # Databases of test processes that are gone (named NAME_PID): dropped, so runs do not pile up.
    "$bin/psql" -h 127.0.0.1 -p "$port" -U caseflow -d postgres -Atc \
        "SELECT datname FROM pg_database WHERE datname ~ '_[0-9]+$'" | while read -r old; do
        if ! kill -0 "${old##*_}" 2>/dev/null; then
            PGOPTIONS="-c client_min_messages=warning" "$bin/dropdb" -h 127.0.0.1 -p "$port" -U caseflow --force --if-exists "$old" || true
        fi
    done
    PGOPTIONS="-c client_min_messages=warning" "$bin/dropdb" -h 127.0.0.1 -p "$port" -U caseflow --if-exists "$name"
    "$bin/createdb" -h 127.0.0.1 -p "$port" -U caseflow "$name"
    url_of "$name"
    ;;
stop)
    if running; then as_owner "$bin/pg_ctl" -D "$data" -m fast -w stop >/dev/null; fi
    ;;
standby)
    primary=${2:?"usage: postgres.sh standby PRIMARY_PORT"}
    if [ ! -f "$data/PG_VERSION" ]; then
        rm -rf "$data"
        mkdir -p "$data" "$state/run"
        chmod 700 "$data"
        [ "$(id -u)" = 0 ] && chown postgres: "$data" "$state/run"
        # -R writes primary_conninfo and standby.signal: the copy starts as a standby.
        as_owner "$bin/pg_basebackup" -h 127.0.0.1 -p "$primary" -U caseflow -D "$data" -R -X stream -c fast \
            >"$state/basebackup.log" 2>&1 || {
            cat "$state/basebackup.log" >&2
            exit 1
        }
    fi
    start
    # Every commit on the primary now waits until this standby has it on disk.
    psql_primary() { "$bin/psql" -h 127.0.0.1 -p "$primary" -U caseflow -d postgres -Atqc "$1"; }
    psql_primary "ALTER SYSTEM SET synchronous_standby_names = '*'" >/dev/null
    psql_primary "SELECT pg_reload_conf()" >/dev/null
    for _ in $(seq 300); do
        [ "$(psql_primary "SELECT count(*) FROM pg_stat_replication WHERE sync_state = 'sync'")" = 1 ] && break
        sleep 0.1
    done
    [ "$(psql_primary "SELECT count(*) FROM pg_stat_replication WHERE sync_state = 'sync'")" = 1 ] || {
        echo "postgres.sh: the standby did not become synchronous" >&2
        exit 1
    }
    url_of postgres
    ;;
crash)
    if [ -f "$data/postmaster.pid" ]; then
        pid=$(head -1 "$data/postmaster.pid")
        # The children first named, then all killed at once: none gets to shut down cleanly.
        children=$(pgrep -P "$pid" || true)
        # shellcheck disable=SC2086
        kill -KILL "$pid" $children 2>/dev/null || true
        for _ in $(seq 100); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.05
        done
    fi
    ;;
freeze | thaw)
    signal=STOP
    [ "$1" = thaw ] && signal=CONT
    if [ -f "$data/postmaster.pid" ]; then
        pid=$(head -1 "$data/postmaster.pid")
        # shellcheck disable=SC2046
        kill -"$signal" "$pid" $(pgrep -P "$pid" || true)
    fi
    ;;
promote)
    as_owner "$bin/pg_ctl" -D "$data" -w -t 60 promote >/dev/null
    ;;
tls)
    cert=${2:?"usage: postgres.sh tls CERT KEY"}
    key=${3:?"usage: postgres.sh tls CERT KEY"}
    start
    install -m 600 "$cert" "$data/server.crt"
    install -m 600 "$key" "$data/server.key"
    [ "$(id -u)" = 0 ] && chown postgres: "$data/server.crt" "$data/server.key"
    # Connections in the clear are refused from now on: only hostssl lines are left.
    printf 'local all all trust\nhostssl all all 127.0.0.1/32 trust\nhostssl replication all 127.0.0.1/32 trust\n' >"$data/pg_hba.conf"
    psql_tls() { PGSSLMODE=require "$bin/psql" -h 127.0.0.1 -p "$(cat "$port_file")" -U caseflow -d postgres -Atqc "$1"; }
    "$bin/psql" -h 127.0.0.1 -p "$(cat "$port_file")" -U caseflow -d postgres -Atqc "ALTER SYSTEM SET ssl = on" >/dev/null
    "$bin/psql" -h 127.0.0.1 -p "$(cat "$port_file")" -U caseflow -d postgres -Atqc "SELECT pg_reload_conf()" >/dev/null
    for _ in $(seq 100); do
        [ "$(psql_tls "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()" 2>/dev/null)" = t ] && exit 0
        sleep 0.1
    done
    echo "postgres.sh: the server does not take TLS connections" >&2
    exit 1
    ;;
*)
    echo "usage: postgres.sh [start|database NAME|stop|standby PORT|crash|promote|tls CERT KEY]" >&2
    exit 2
    ;;
esac
