#!/usr/bin/env bash
# A real PostgreSQL for the postgres state store's tests
# (core/store/postgres): installs Debian's postgresql, starts its cluster
# (creating one if there is none), and makes a login role and database for
# the tests. Idempotent: run it again and it only checks. Needs root.
#
#   pg_env="$(.ci/postgres-setup.sh)"   # under set -e, a failed setup stops here
#   eval "$pg_env"                      # then: go test ./core/store/postgres/
#
# (A bare eval "$(.ci/postgres-setup.sh)" would carry on after a failure:
# eval of an empty string succeeds.)
#
# stdout carries only the export line; everything else goes to stderr.
# Settings (environment): DLS_PG_USER (role and database name, default dls),
# DLS_PG_PASSWORD (default dls). The tests make their own schema inside that
# database and drop it afterwards, so the role needs no CREATEDB.
set -euo pipefail
export PATH="/usr/sbin:/usr/bin:/sbin:/bin:$PATH"

user="${DLS_PG_USER:-dls}"
password="${DLS_PG_PASSWORD:-dls}"

log() { echo "postgres-setup: $*" >&2; }
die() { log "$*"; exit 1; }

[ "$(id -u)" = 0 ] || die "run as root (installs packages, starts the cluster as user postgres)"
case "$user$password" in
  *[!A-Za-z0-9_]*) die "DLS_PG_USER and DLS_PG_PASSWORD: letters, digits and _ only" ;;
esac

if ! command -v pg_ctlcluster >/dev/null || [ -z "$(ls /usr/lib/postgresql/*/bin/postgres 2>/dev/null)" ]; then
  log "installing postgresql"
  export DEBIAN_FRONTEND=noninteractive
  # In a container the package's own service start is refused
  # (policy-rc.d): the cluster is started below either way.
  if ! apt-get install -y -qq postgresql >/dev/null 2>&1; then
    apt-get update -qq >&2
    apt-get install -y -qq postgresql >/dev/null
  fi
fi

version="$(ls /usr/lib/postgresql | sort -V | tail -1)"
[ -x "/usr/lib/postgresql/$version/bin/postgres" ] || die "no postgres binary under /usr/lib/postgresql/$version"

# pg_lsclusters -h: version cluster port status owner datadir logfile
cluster_field() { pg_lsclusters -h | awk -v v="$version" -v f="$1" '$1 == v && $2 == "main" { print $f }'; }

if [ -z "$(cluster_field 2)" ]; then
  log "creating cluster $version/main"
  pg_createcluster "$version" main >&2
fi
port="$(cluster_field 3)"

# The socket directory lives on /run, which a restarted machine empties.
install -d -o postgres -g postgres -m 2775 /var/run/postgresql

# A server that was killed (kill -9 at the end of a session) leaves its
# lock files behind, and its last processes can take a moment to go; the
# start refuses until they have, so try a few times.
for try in 1 2 3 4 5; do
  [ "$(cluster_field 4)" = online ] && break
  log "starting cluster $version/main on port $port"
  pg_ctlcluster "$version" main start >&2 && break
  [ "$try" = 5 ] && die "pg_ctlcluster $version main start failed; see $(cluster_field 7)"
  sleep 2
done
for _ in $(seq 1 100); do
  pg_isready -q -h 127.0.0.1 -p "$port" && break
  sleep 0.2
done
pg_isready -q -h 127.0.0.1 -p "$port" || die "PostgreSQL $version does not answer on 127.0.0.1:$port"

as_postgres() { runuser -u postgres -- psql -p "$port" -X -q -v ON_ERROR_STOP=1 -At "$@"; }

if [ "$(as_postgres -c "SELECT 1 FROM pg_roles WHERE rolname = '$user'")" != 1 ]; then
  log "creating role $user"
  as_postgres -c "CREATE ROLE $user LOGIN PASSWORD '$password'" >&2
else
  as_postgres -c "ALTER ROLE $user LOGIN PASSWORD '$password'" >&2
fi
if [ "$(as_postgres -c "SELECT 1 FROM pg_database WHERE datname = '$user'")" != 1 ]; then
  log "creating database $user"
  as_postgres -c "CREATE DATABASE $user OWNER $user" >&2
fi

dsn="postgres://$user:$password@127.0.0.1:$port/$user?sslmode=disable"
# Log in as the tests will: over TCP with the password (Debian's pg_hba.conf
# asks for scram-sha-256 on 127.0.0.1).
PGCONNECT_TIMEOUT=5 psql "$dsn" -X -q -At -c 'SELECT 1' >/dev/null ||
  die "cannot log in as $user on 127.0.0.1:$port: check pg_hba.conf"
log "PostgreSQL $version ready on 127.0.0.1:$port, database $user"
echo "export DLS_PG_DSN=$dsn"
