# shellcheck shell=bash disable=SC2154,SC2034  # $seconds, $busybox come from the sourcing script; it reads gbps, rtts
# Shared by bench/vpc and bench/cluster (sourced, not run): medians, running a tool in a network namespace,
# one iperf3 run and a series of pings between two namespaces.
# The sourcing script defines `die MESSAGE`, $seconds (the length of one iperf3 run), $busybox (the image's
# static busybox, whose ping measures every path alike) and the array `background` (pids its cleanup kills).

# median/min/max of numbers on stdin.
stats() {
  sort -g | awk '{ v[NR] = $1 } END {
    if (NR == 0) { print "nan nan nan"; exit }
    m = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2
    printf "%s %s %s\n", m, v[1], v[NR] }'
}
# print_stats LABEL UNIT VALUES...: one line with median, min and max.
print_stats() {
  local label=$1 unit=$2 median min max
  shift 2
  read -r median min max < <(printf '%s\n' "$@" | stats)
  printf '  %-48s median %9.2f %-6s min %9.2f %-6s max %9.2f %-6s (n=%d)\n' "$label" "$median" "$unit" "$min" \
    "$unit" "$max" "$unit" "$#"
}
median_of() { printf '%s\n' "$@" | stats | awk '{ print $1 }'; }

# in_ns WHERE CMD...: WHERE is netns:NAME (a named namespace) or pid:PID (that process's network namespace).
in_ns() {
  local where=$1
  shift
  case "$where" in
    netns:*) ip netns exec "${where#netns:}" "$@" ;;
    pid:*) nsenter -t "${where#pid:}" -n "$@" ;;
    *) die "in_ns: bad place \"$where\"" ;;
  esac
}

# wait_listen WHERE PORT: until a TCP socket listens on PORT there (10 s).
wait_listen() {
  local _
  for _ in $(seq 200); do
    in_ns "$1" ss -Htln "sport = :$2" 2>/dev/null | grep -q . && return 0
    sleep 0.05
  done
  die "nothing listens on port $2 in $1 after 10 s"
}

# iperf_once SERVER_WHERE SERVER_IP CLIENT_WHERE: one iperf3 run of $seconds s; sets gbps (received) and
# retransmits (the sender's TCP retransmissions: segments lost, or taken for lost, on the way).
gbps=
retransmits=
iperf_once() {
  local server=$1 ip=$2 client=$3 server_pid out
  in_ns "$server" timeout $((seconds + 30)) iperf3 -s -1 -p 5201 >/dev/null 2>&1 &
  server_pid=$!
  background+=("$server_pid")
  wait_listen "$server" 5201
  out=$(in_ns "$client" timeout $((seconds + 30)) iperf3 -c "$ip" -p 5201 -t "$seconds" -J) ||
    die "iperf3 -c $ip from $client failed: $(jq -r '.error // empty' <<<"$out" 2>/dev/null)"
  wait "$server_pid" 2>/dev/null || true
  gbps=$(jq -r '.end.sum_received.bits_per_second / 1e9' <<<"$out")
  retransmits=$(jq -r '.end.sum_sent.retransmits // 0' <<<"$out")
}

# ping_rtts WHERE IP COUNT: COUNT pings 50 ms apart; sets rtts to their round-trip times (ms).
rtts=()
ping_rtts() {
  local out
  out=$(in_ns "$1" "$busybox" ping -c "$3" -i 0.05 -W 5 "$2" 2>&1) || die "ping $2 from $1 failed: $out"
  mapfile -t rtts < <(sed -n 's/.*time=\([0-9.]*\) ms.*/\1/p' <<<"$out")
  [[ ${#rtts[@]} -gt 0 ]] || die "ping $2 from $1: no replies: $out"
}
