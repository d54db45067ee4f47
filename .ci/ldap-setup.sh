#!/usr/bin/env bash
# OpenLDAP for the ldap auth plugin's integration tests: installs slapd and
# ldap-utils (Debian packages). The tests start their own slapd on a free
# loopback port with a throwaway database, so the package's own service is
# neither needed nor used: it is stopped if it runs. Idempotent. Needs root.
#
#   .ci/ldap-setup.sh && go test ./plugins/auth/ldap/...
set -euo pipefail
export PATH="/usr/sbin:/usr/bin:/sbin:/bin:$PATH"

log() { echo "ldap-setup: $*" >&2; }
die() { log "$*"; exit 1; }

if [ -x /usr/sbin/slapd ] && command -v ldapadd >/dev/null 2>&1 && [ -x /usr/sbin/slapadd ]; then
  log "slapd and ldap-utils are installed"
else
  [ "$(id -u)" = 0 ] || die "run as root (apt-get install slapd ldap-utils)"
  log "installing slapd ldap-utils"
  export DEBIAN_FRONTEND=noninteractive
  # Answer the package's questions up front; the tests do not use the
  # directory it configures, only the binaries and schema files.
  if command -v debconf-set-selections >/dev/null 2>&1; then
    debconf-set-selections <<'EOF'
slapd slapd/no_configuration boolean false
slapd slapd/domain string dls.test
slapd shared/organization string DLS
slapd slapd/password1 password dls-ci-unused
slapd slapd/password2 password dls-ci-unused
EOF
  fi
  # In containers policy-rc.d refuses the service start: that is fine.
  if ! apt-get install -y -qq --no-install-recommends slapd ldap-utils >/dev/null 2>&1; then
    apt-get update -qq >&2
    apt-get install -y -qq --no-install-recommends slapd ldap-utils >/dev/null
  fi
fi

# The packaged service, if it started, listens on port 389 and is not
# what the tests talk to; stop it so that it holds no port or lock.
if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet slapd 2>/dev/null; then
  log "stopping the packaged slapd service"
  systemctl stop slapd || true
  systemctl disable slapd >/dev/null 2>&1 || true
elif [ -s /run/slapd/slapd.pid ] && kill -0 "$(cat /run/slapd/slapd.pid)" 2>/dev/null; then
  log "stopping the packaged slapd (pid $(cat /run/slapd/slapd.pid))"
  kill "$(cat /run/slapd/slapd.pid)" || true
fi

for f in /etc/ldap/schema/core.schema /etc/ldap/schema/cosine.schema /etc/ldap/schema/nis.schema /etc/ldap/schema/inetorgperson.schema; do
  [ -r "$f" ] || die "$f is missing: the tests load it"
done
/usr/sbin/slapd -VV 2>&1 | head -1 >&2
