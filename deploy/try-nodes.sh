#!/bin/sh
# Starts N Concord nodes on one throwaway PostgreSQL and one throwaway Redis, all on loopback, for
# trying several nodes out on one machine. Everything lives in a temporary folder, removed with
# every process on Ctrl-C. Not for production: PostgreSQL runs with fsync off and trust auth.
#
# Usage: deploy/try-nodes.sh [N (default 2)] [path to concord (default target/debug/concord)]
# Node i listens on 127.0.0.1:303i (3031, 3032, …); sign in on any, edit on another.
# Blobs stay in each node's own data folder here (no shared store is set up).
# Needs Debian's postgresql and redis-server packages (apt-get install postgresql redis-server).
set -eu

n=${1:-2}
concord=$(realpath "${2:-target/debug/concord}")
pg_bin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)
root=$(mktemp -d /tmp/concord-nodes.XXXXXX)
chmod 755 "$root"
pids=""

# As the postgres system user when run as root (PostgreSQL refuses to run as root).
as_owner() {
    if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

cleanup() {
    trap - EXIT INT TERM
    for pid in $pids; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    as_owner "$pg_bin/pg_ctl" -D "$root/pg" -m fast stop >/dev/null 2>&1 || true
    rm -rf "$root"
}
trap cleanup EXIT INT TERM

mkdir "$root/pg" "$root/run"
if [ "$(id -u)" = 0 ]; then chown postgres:postgres "$root/pg" "$root/run"; fi
as_owner "$pg_bin/initdb" -U postgres --auth=trust --no-sync -D "$root/pg" >/dev/null
as_owner "$pg_bin/pg_ctl" -D "$root/pg" -l "$root/pg/log" -w \
    -o "-k $root/run -c listen_addresses= -c fsync=off" start >/dev/null
database="postgres://postgres@localhost/postgres?host=$root/run"

redis_port=$(( 6400 + $$ % 1000 ))
redis-server --port "$redis_port" --bind 127.0.0.1 --save '' --appendonly no >"$root/redis.log" 2>&1 &
pids="$pids $!"

# One sign-in code key for every node: codes mailed by one node verify on the others.
head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$root/secret.key"
chmod 600 "$root/secret.key"

i=1
while [ "$i" -le "$n" ]; do
    DATABASE_URL="$database" REDIS_URL="redis://127.0.0.1:$redis_port" CONCORD_DATA="$root/node$i" \
        CONCORD_SECRET_FILE="$root/secret.key" CONCORD_LISTEN="127.0.0.1:$(( 3030 + i ))" \
        "$concord" >"$root/node$i.log" 2>&1 &
    pids="$pids $!"
    echo "node $i: http://127.0.0.1:$(( 3030 + i ))  (log: $root/node$i.log)"
    i=$(( i + 1 ))
done
echo "PostgreSQL: $database"
echo "Redis: redis://127.0.0.1:$redis_port  — Ctrl-C stops everything and removes $root"
wait
