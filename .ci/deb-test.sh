#!/usr/bin/env bash
# Installs the Debian package (make deb) on a clean Debian root and checks
# what it promises: the dls user and group, the unit, the config,
# `dls version`, `dls validate` of the example config, DLS_INIT_INTERFACE
# never replacing an admin's config; then purges it and checks that the
# user, /var/lib/dls and /etc/dls are gone. Root: it builds the root with
# debootstrap (once; cached as a tarball under /var/cache/dls-deb-test)
# and chroots into a fresh copy of it, removed at exit.
#
#   bash .ci/deb-test.sh dist/dls_<version>_amd64.deb
set -euo pipefail
cd "$(dirname "$0")/.."
source .ci/packages.sh

deb=${1:?usage: deb-test.sh DLS.deb}
[ -f "$deb" ] || { echo "deb-test: $deb: no such file (run make deb)" >&2; exit 1; }
[ "$(id -u)" = 0 ] || { echo "deb-test: run as root (debootstrap, chroot)" >&2; exit 1; }
install_missing "debootstrap debootstrap"

suite=bookworm
# The mirror apt uses here (deb822 URIs: or a one-line deb entry).
mirror=$(grep -hoE '^URIs: *http[^ ]*/debian/?$' /etc/apt/sources.list.d/*.sources 2>/dev/null | head -1 | sed 's/^URIs: *//')
[ -n "$mirror" ] || mirror=$(grep -hoE '^deb +http[^ ]*/debian/? ' /etc/apt/sources.list 2>/dev/null | head -1 | awk '{print $2}')
mirror=${mirror:-http://deb.debian.org/debian}
cache=/var/cache/dls-deb-test
tarball=$cache/$suite-minbase.tar

start=$SECONDS
if [ ! -f "$tarball" ]; then
	echo "== debootstrap $suite from $mirror (once; cached in $tarball)"
	mkdir -p "$cache"
	tmp=$(mktemp -d "$cache/root.XXXXXX")
	debootstrap --variant=minbase --include=adduser "$suite" "$tmp" "$mirror" >"$cache/debootstrap.log" 2>&1 ||
		{ tail -20 "$cache/debootstrap.log" >&2; rm -rf "$tmp"; exit 1; }
	tar -C "$tmp" -cf "$tarball.new" .
	mv "$tarball.new" "$tarball"
	rm -rf "$tmp"
fi

root=$(mktemp -d /var/tmp/dls-deb-test.XXXXXX)
cleanup() {
	umount "$root/proc" 2>/dev/null || true
	rm -rf "$root"
}
trap cleanup EXIT
tar -C "$root" -xf "$tarball"
mount -t proc proc "$root/proc"
cp "$deb" "$root/tmp/dls.deb"
echo "== root ready in $((SECONDS - start)) s"

in_root() { chroot "$root" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin "$@"; }
fail() { echo "deb-test: FAIL: $*" >&2; exit 1; }
pass=0
ok() { echo "ok: $*"; pass=$((pass + 1)); }

echo "== install"
in_root dpkg -i /tmp/dls.deb
in_root getent passwd dls | grep -q ':/var/lib/dls:/usr/sbin/nologin$' || fail "no system user dls with home /var/lib/dls: $(in_root getent passwd dls)"
[ "$(in_root id -u dls)" -lt 1000 ] || fail "dls is not a system user (uid $(in_root id -u dls))"
in_root getent group dls >/dev/null || fail "no group dls"
ok "system user and group dls"
unit=$root/usr/lib/systemd/system/dls.service
grep -q '^User=dls$' "$unit" && grep -q '^StateDirectory=dls$' "$unit" &&
	grep -q '^ExecStart=/usr/bin/dls serve --config /etc/dls/dls.hcl$' "$unit" || fail "unit: $(cat "$unit")"
ok "unit $unit"
# (stat inside the root: its user names, not the host's)
mode() { in_root stat -c %U:%G:%a "$1"; }
[ "$(mode /var/lib/dls)" = dls:dls:750 ] || fail "/var/lib/dls is $(mode /var/lib/dls)"
[ "$(mode /etc/dls/dls.hcl)" = root:dls:640 ] || fail "/etc/dls/dls.hcl is $(mode /etc/dls/dls.hcl)"
in_root dpkg-query -W -f '${Conffiles}\n' dls | grep -q '/etc/dls/dls.hcl' || fail "/etc/dls/dls.hcl is not a conffile"
ok "/var/lib/dls dls:dls 0750, /etc/dls/dls.hcl root:dls 0640 conffile"
out=$(in_root dls version)
echo "$out"
grep -qE '^dls [0-9a-z]' <<<"$out" && grep -q '^commit: [0-9a-f]' <<<"$out" && grep -q '^go: *go1\.' <<<"$out" || fail "dls version: $out"
ok "dls version"
in_root bash -n /usr/share/bash-completion/completions/dls || fail "bash completion does not parse"
grep -q '"dls session watch"' "$root/usr/share/bash-completion/completions/dls" || fail "bash completion lacks dls session watch"
[ -f "$root/usr/share/zsh/vendor-completions/_dls" ] && [ -f "$root/usr/share/fish/vendor_completions.d/dls.fish" ] || fail "no zsh or fish completion"
ok "completion for bash, zsh, fish"
# The example config loads, and finds the package's plugins beside the
# binary that /usr/bin/dls links to.
in_root dls validate --config /etc/dls/dls.hcl || fail "dls validate of the example config"
ok "dls validate /etc/dls/dls.hcl"
# DLS_INIT_INTERFACE with an admin's config: kept, said so.
echo '# mine' >>"$root/etc/dls/dls.hcl"
out=$(chroot "$root" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin DLS_INIT_INTERFACE=eth9 dpkg -i /tmp/dls.deb 2>&1)
grep -q 'was changed by the admin: DLS_INIT_INTERFACE ignored' <<<"$out" || fail "reinstall with DLS_INIT_INTERFACE over an admin's config: $out"
tail -1 "$root/etc/dls/dls.hcl" | grep -q '^# mine$' || fail "the admin's config was replaced"
ok "DLS_INIT_INTERFACE keeps an admin's config"
# DLS_INIT_INTERFACE over the untouched example: dls init writes the
# config; when it fails (no such interface), the example stays and the
# message says what to run; never a failed install.
cp "$root/usr/share/dls/dls.hcl.example" "$root/etc/dls/dls.hcl"
out=$(chroot "$root" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin DLS_INIT_INTERFACE=dls-nope0 dpkg -i /tmp/dls.deb 2>&1) || fail "reinstall with DLS_INIT_INTERFACE=dls-nope0: $out"
grep -q 'dls init --interface dls-nope0 failed; /etc/dls/dls.hcl is the example' <<<"$out" || fail "DLS_INIT_INTERFACE=dls-nope0: $out"
cmp -s "$root/usr/share/dls/dls.hcl.example" "$root/etc/dls/dls.hcl" || fail "a failed dls init changed /etc/dls/dls.hcl"
[ ! -e "$root/etc/dls/dls.hcl.dpkg-init" ] || fail "a failed dls init left dls.hcl.dpkg-init"
ok "DLS_INIT_INTERFACE=dls-nope0: dls init failed, the example kept, what to run said"
out=$(chroot "$root" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin DLS_INIT_INTERFACE=lo dpkg -i /tmp/dls.deb 2>&1) || fail "reinstall with DLS_INIT_INTERFACE=lo: $out"
grep -q 'wrote /etc/dls/dls.hcl for interface lo (dls init)' <<<"$out" || fail "DLS_INIT_INTERFACE=lo: $out"
cmp -s "$root/usr/share/dls/dls.hcl.example" "$root/etc/dls/dls.hcl" && fail "dls init said it wrote the config, the example is still there"
[ "$(mode /etc/dls/dls.hcl)" = root:dls:640 ] || fail "dls init's /etc/dls/dls.hcl is $(mode /etc/dls/dls.hcl)"
chroot "$root" /usr/bin/dls validate --config /etc/dls/dls.hcl >/dev/null || fail "dls validate of the config dls init wrote at install"
ok "DLS_INIT_INTERFACE=lo: dls init wrote /etc/dls/dls.hcl, dls validate accepts it"

echo "== purge"
in_root dpkg --purge dls
in_root getent passwd dls >/dev/null && fail "user dls left after purge"
in_root getent group dls >/dev/null && fail "group dls left after purge"
for p in /var/lib/dls /etc/dls /usr/lib/dls /usr/bin/dls /usr/lib/systemd/system/dls.service /usr/share/bash-completion/completions/dls; do
	[ ! -e "$root$p" ] && [ ! -L "$root$p" ] || fail "$p left after purge"
done
ok "purge removes the user, the group, /var/lib/dls, /etc/dls and the files"
echo "deb-test: $pass passed, 0 failed in $((SECONDS - start)) s ($(du -h "$deb" | cut -f1) $(basename "$deb"))"
