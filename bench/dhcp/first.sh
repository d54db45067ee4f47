# First contact (run.sh -first, make bench-dhcp-first): sourced by run.sh
# after the namespaces, the binaries and the renewal configs exist; uses
# its start_dls, start_kea, stop_server, $work, $cli, $pin_load.
#
# Each rung starts DLS from an empty data dir and Kea from an empty memfile,
# so every MAC perfdhcp draws is one the server has never seen: the cost of
# a lab's first morning, not of renewals.

# perfdhcp_mac R: the MAC perfdhcp gives its client number R (0 <= R <
# 65536): it adds R's bytes, without carry, to its template
# 00:0c:01:02:03:04 from the last octet (TestControl::generateMacAddress).
perfdhcp_mac() {
  printf '00:0c:01:02:%02x:%02x' $(((0x03 + ($1 >> 8)) & 255)) $(((0x04 + $1) & 255))
}

# first_configs writes the declared variant's configs: DECLARED clients,
# perfdhcp's numbers 0 .. DECLARED-1, as DLS client blocks (an image on the
# dir storage, no reserved address: a dynamic lease from the pool, as a
# lab's machines get) and as Kea host reservations by hw-address (a
# hostname, no address: the pool's, likewise).
first_configs() {
  truncate -s 1M "$work/image.raw"
  for ((i = 0; i < DECLARED; i++)); do perfdhcp_mac "$i"; echo; done >"$work/declared.macs"
  {
    cat "$work/dls.hcl"
    cat <<HCL
storage "dir" "local" {
  config {
    root = "storage"
  }
}
image "bench" {
  storage = "local"
  source  = "$work/image.raw"
}
HCL
    for ((i = 0; i < DECLARED; i++)); do
      printf 'client "pc%05d" {\n  mac   = "%s"\n  image = "bench"\n}\n' "$i" "$(perfdhcp_mac "$i")"
    done
  } >"$work/dls-declared.hcl"
  local hosts
  hosts=$(for ((i = 0; i < DECLARED; i++)); do
    printf '{ "hw-address": "%s", "hostname": "pc%05d" }\n' "$(perfdhcp_mac "$i")" "$i"
  done | paste -sd, -)
  sed "s|\"pools\": \[ { \"pool\": \"10.99.1.0 - 10.99.255.250\" } \],|&\n                   \"reservations\": [ $hosts ],|" \
    "$work/kea.json" >"$work/kea-declared.json"
  grep -q '"reservations"' "$work/kea-declared.json" || { echo "bench-dhcp: could not write Kea's reservations"; exit 1; }
}

# perf_rung RATE: one perfdhcp run of SECS seconds at RATE against the
# running server; prints "achieved do_drop ra_drop do_avg ra_avg do_max
# ra_max" (rate in exchanges/s, drops in %, delays in ms; a figure
# perfdhcp did not give is "-", a drop it did not give 100).
perf_rung() {
  local out
  out=$(ip netns exec "$cli" "${pin_load[@]}" perfdhcp -4 -l vcli -r "$1" "${macs_arg[@]}" -p "$SECS" 10.99.0.1 2>&1 || true)
  printf '### offered %s/s\n%s\n' "$1" "$out" >>"$work/perfdhcp.log"
  echo "$out" | awk '
    function num(v) { return v ~ /^[0-9.e+-]+$/ ? v : "-" }
    /^Rate: /                          { rate = $2 }
    /^\*\*\*Statistics for: DISCOVER-OFFER/ { x = "do" }
    /^\*\*\*Statistics for: REQUEST-ACK/    { x = "ra" }
    /^drops ratio:/ && x != ""         { d[x] = $3 }
    /^avg delay:/ && x != ""           { a[x] = $3 }
    /^max delay:/ && x != ""           { m[x] = $3 }
    END {
      dd = num(d["do"]); dr = num(d["ra"])
      printf "%s %s %s %s %s %s %s\n", (rate == "" ? 0 : rate), (dd == "-" ? 100 : dd), (dr == "-" ? 100 : dr),
        num(a["do"]), num(a["ra"]), num(m["do"]), num(m["ra"])
    }'
}

# declared_leased SERVER: how many declared MACs hold a lease in the
# stopped server's store, "-" without sqlite3 for DLS's. Shows the declared
# variant did serve declared machines (about DECLARED/CLIENTS of the draws).
declared_leased() {
  local macs
  if [ "$1" = DLS ]; then
    command -v sqlite3 >/dev/null || { echo -; return; }
    macs=$(sqlite3 "$work/dls-var/dls.db" "SELECT mac FROM leases WHERE state = 'bound'")
  else
    macs=$(cat "$work"/kea-leases.csv* 2>/dev/null | awk -F, 'NR > 1 && $2 ~ /:/ { print tolower($2) }')
  fi
  echo "$macs" | grep -Fxf "$work/declared.macs" | sort -u | wc -l
}

# dls_errors: one line of what DLS's DHCP plugin counted as dropped or
# refused (dls_dhcp_errors_total by reason, NAKs sent) and of the kernel's
# UDP errors in the servers' namespace: where a rung's drops came from.
dls_errors() {
  local m k
  m=$(ip netns exec "$srv" bash -c 'exec 3<>/dev/tcp/127.0.0.1/9180 && printf "GET /metrics HTTP/1.0\r\n\r\n" >&3 && cat <&3' 2>/dev/null |
    awk '/^dls_dhcp_errors_total\{/ && $2 > 0 { sub(/^dls_dhcp_errors_total/, ""); printf "%s=%s ", $1, $2 }
         /^dls_dhcp_replies_total\{type="nak"\}/ { printf "naks=%s ", $2 }')
  k=$(ip netns exec "$srv" nstat -az UdpRcvbufErrors UdpSndbufErrors UdpInErrors 2>/dev/null | awk 'NR > 1 && $1 ~ /^Udp/ { printf "%s=%s ", $1, $2 }')
  echo "      DLS counted: ${m:-no errors }| kernel: ${k:-?}"
}

# load_rcvbuf: UdpRcvbufErrors so far in perfdhcp's namespace: answers that
# reached the load's side and overflowed perfdhcp's socket because perfdhcp
# did not read them in time. Those drops are perfdhcp's own ceiling, not
# the server's; each rung prints how many it had.
load_rcvbuf() {
  ip netns exec "$cli" nstat -az UdpRcvbufErrors 2>/dev/null | awk '$1 == "UdpRcvbufErrors" { n = $2 } END { print n + 0 }'
}

# clean RATE ACHIEVED DO_DROP RA_DROP: the rung's verdict.
clean() {
  awk -v r="$1" -v a="$2" -v d="$3" -v q="$4" 'BEGIN { exit !(d < 1 && q < 1 && a >= 0.95 * r) }'
}

# first_variant NAME DLS_CONFIG KEA_CONFIG: the ladder, both servers fresh
# at every rung; a table row per rung and server, then the summary.
first_variant() {
  local name=$1 dcfg=$2 kcfg=$3 rate server achieved dd dr ad ar md mr verdict known errs overflow
  local -A best=([DLS]=0 [Kea]=0) top=([DLS]=0 [Kea]=0) broken=([DLS]=0 [Kea]=0) avg4=([DLS]="-" [Kea]="-")
  local rows=""
  echo "== first contact, $name: ladder ${RATES//,/ }/s, ${SECS} s a rung, $macs_how, both servers fresh each rung"
  for rate in ${RATES//,/ }; do
    for server in DLS Kea; do
      if [ "$server" = DLS ]; then start_dls "$dcfg" && dls_volumes_ready; else start_kea "$kcfg"; fi
      overflow=$(load_rcvbuf)
      read -r achieved dd dr ad ar md mr < <(perf_rung "$rate")
      overflow=$(($(load_rcvbuf) - overflow))
      errs=
      [ "$server" = DLS ] && errs=$(dls_errors)
      stop_server
      known=-
      [ "$dcfg" = "$work/dls-declared.hcl" ] && known=$(declared_leased "$server")
      if clean "$rate" "$achieved" "$dd" "$dr"; then
        verdict=clean
        top[$server]=$rate
        [ "${broken[$server]}" = 1 ] || best[$server]=$rate
      else
        verdict=no
        broken[$server]=1
      fi
      [ "$rate" = 4000 ] && avg4[$server]="$ad / $ar"
      rows+=$(printf '| %6d | %-3s | %7.3f | %7.3f | %9.1f | %s / %s | %s / %s | %s | %-5s |' \
        "$rate" "$server" "$dd" "$dr" "$achieved" "$ad" "$ar" "$md" "$mr" "$known" "$verdict")$'\n'
      printf '  %-3s offered %6d/s  achieved %9.1f/s  drops DO %7.3f %% RA %7.3f %%  avg %s/%s ms  max %s/%s ms  declared leased %s  %s\n' \
        "$server" "$rate" "$achieved" "$dd" "$dr" "$ad" "$ar" "$md" "$mr" "$known" "$verdict"
      [ -z "$errs" ] || echo "$errs"
      echo "      answers that overflowed perfdhcp's own socket: $overflow"
    done
  done
  echo
  echo "### first contact, $name"
  echo
  echo "| offered/s | server | DO drops % | RA drops % | achieved/s | avg delay DO / RA ms | max delay DO / RA ms | declared MACs leased | clean |"
  echo "|---|---|---|---|---|---|---|---|---|"
  printf '%s' "$rows"
  echo
  printf 'highest clean rung: DLS %d/s, Kea %d/s; ' "${top[DLS]}" "${top[Kea]}"
  awk -v a="${top[DLS]}" -v b="${top[Kea]}" 'BEGIN { if (b > 0) printf "DLS/Kea %.2f\n", a / b; else print "DLS/Kea: Kea had no clean rung" }'
  printf 'highest clean rung with every rung below it clean: DLS %d/s, Kea %d/s; ' "${best[DLS]}" "${best[Kea]}"
  awk -v a="${best[DLS]}" -v b="${best[Kea]}" 'BEGIN { if (b > 0) printf "DLS/Kea %.2f\n", a / b; else print "DLS/Kea: Kea had none" }'
  printf 'avg delay at 4000/s (DO / RA): DLS %s ms, Kea %s ms\n' "${avg4[DLS]}" "${avg4[Kea]}"
  echo
}

first_contact() {
  local v i
  macs_arg=(-R "$CLIENTS") macs_how="perfdhcp's clients 0..$((CLIENTS - 1)) in order"
  if [ "$RANDOM_MACS" = 1 ]; then
    # perfdhcp -M draws from the list with a 16-bit index.
    [ "$CLIENTS" -le 65536 ] || { echo "bench-dhcp: -random takes CLIENTS <= 65536"; exit 1; }
    for ((i = 0; i < CLIENTS; i++)); do perfdhcp_mac "$i"; echo; done >"$work/clients.macs"
    macs_arg=(-M "$work/clients.macs") macs_how="MACs drawn at random of $CLIENTS"
  fi
  echo "== first contact: DLS (SQLite store, fsync per lease batch) and Kea $(kea-dhcp4 -v) (memfile, no fsync)"
  first_configs
  for v in ${VARIANTS//,/ }; do
    case $v in
      unknown) first_variant "no client known" "$work/dls.hcl" "$work/kea.json" ;;
      declared) first_variant "$DECLARED clients declared, none leased" "$work/dls-declared.hcl" "$work/kea-declared.json" ;;
    esac
  done
}
