# Sourced by scripts that install the Debian packages they run when they
# are missing (e2e/run.sh, bench/storm/run.sh, bench/iscsi/lib.sh).
#
# install_missing "WHAT PACKAGE"...: WHAT is a command, or an absolute
# path to a file; the packages of those missing are installed with apt-get
# (root only: otherwise it names them and returns 1). A package named
# twice is installed once.
install_missing() {
	local n what pkg missing=()
	for n in "$@"; do
		what="${n% *}" pkg="${n#* }"
		if [[ $what == /* ]]; then [ -e "$what" ] && continue; else command -v "$what" >/dev/null 2>&1 && continue; fi
		[[ " ${missing[*]:-} " == *" $pkg "* ]] || missing+=("$pkg")
	done
	[ "${#missing[@]}" -gt 0 ] || return 0
	if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
		echo "missing Debian packages: ${missing[*]} (install them as root)" >&2
		return 1
	fi
	echo "== installing ${missing[*]}" >&2
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null ||
		{ apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null; }
}
