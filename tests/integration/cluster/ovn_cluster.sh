#!/usr/bin/env bash
# A simulated multi-host OVN on one machine (issue 20, docs/cluster.md): the central part (NB and SB
# ovsdb-servers, ovn-northd) and N "hosts" (2 by default), each a network namespace with its own
# ovsdb-server (conf.db), ovs-vswitchd (userspace datapath: datapath_type=netdev, this kind of host has no
# openvswitch module) and ovn-controller with Geneve over the underlay: a Linux bridge in a namespace of its
# own, a veth to each host (10.250.0.N/24). Each host N has one workload: an OVS internal port of br-int
# (external_ids:iface-id=wN) moved into a namespace of its own, 10.0.0.N/24, MTU 1400 for Geneve's
# overhead. The logical network (a switch with ports w1..wN) is the caller's to make, in the NB database at
# unix:DIR/nb.sock.
#
#   ovn_cluster.sh up DIR PREFIX [N]   everything under DIR (pid files, sockets, logs, databases);
#                                      namespaces PREFIXovn-{c,u,h1..hN,w1..wN}, listed in DIR/netns
#   ovn_cluster.sh add-workload DIR PREFIX HOST NAME IFACE_ID MAC ADDRESS/LEN GATEWAY
#                                      another workload on host HOST: an internal port NAME of its br-int
#                                      (external_ids:iface-id=IFACE_ID: a logical port someone else made)
#                                      moved into namespace PREFIXovn-v-NAME with MAC, ADDRESS/LEN, MTU 1400
#                                      and a default route via GATEWAY (NAME: at most 15 bytes, not wN)
#   ovn_cluster.sh add-uplink DIR PREFIX HOST NETWORK
#                                      "the outside" on host HOST: a bridge br-ex (netdev) mapped to physical
#                                      network NETWORK (ovn-bridge-mappings), whose internal port up0 is
#                                      moved into namespace PREFIXovn-i (up, no address: the caller's to give)
#   ovn_cluster.sh kill-host DIR N     SIGKILLs host N's ovsdb-server, ovs-vswitchd and ovn-controller, as a
#                                      host's death would (its namespaces stay until down)
#   ovn_cluster.sh down DIR            kills every process DIR's pid files name (only those whose command
#                                      line names DIR), deletes DIR/netns's namespaces; exits 1 if anything
#                                      is left
#
# All traffic stays inside the namespaces this script creates; the central part talks over Unix sockets.
set -Eeuo pipefail

ovs_schema=/usr/share/openvswitch/vswitch.ovsschema
nb_schema=/usr/share/ovn/ovn-nb.ovsschema
sb_schema=/usr/share/ovn/ovn-sb.ovsschema

log() { echo "ovn_cluster: $*" >&2; }

# Runs a command inside namespace $1 with every OVS/OVN directory pointing at $2, so nothing defaults to
# the system's /run/openvswitch or /var/lib/ovn.
in_ns() {
  local ns=$1 home=$2
  shift 2
  ip netns exec "$ns" env OVS_RUNDIR="$home" OVS_DBDIR="$home" OVS_LOGDIR="$home" OVS_SYSCONFDIR="$home" \
    OVN_RUNDIR="$home" OVN_DBDIR="$home" OVN_LOGDIR="$home" OVN_SYSCONFDIR="$home" "$@"
}

# Daemon options: detached, its pid file, control socket and log in $1 named $2.
daemon_opts() { echo "--detach --no-chdir --pidfile=$1/$2.pid --unixctl=$1/$2.ctl --log-file=$1/$2.log -vconsole:off"; }

add_netns() {
  local dir=$1 ns=$2
  ip netns add "$ns"
  echo "$ns" >>"$dir/netns"
  ip -n "$ns" link set lo up
}

start_ovsdb() {  # DIR NS NAME SCHEMA: an ovsdb-server on DIR/NAME.sock with database DIR/NAME.db
  local dir=$1 ns=$2 name=$3 schema=$4
  ovsdb-tool create "$dir/$name.db" "$schema"
  # shellcheck disable=SC2046
  in_ns "$ns" "$dir" ovsdb-server $(daemon_opts "$dir" "$name") --remote="punix:$dir/$name.sock" "$dir/$name.db"
}

up() {
  local dir=$1 prefix=$2 hosts=$3
  [[ $hosts =~ ^[1-9][0-9]?$ ]] || { log "up: the number of hosts must be 1-99, not \"$hosts\""; return 2; }
  mkdir -p "$dir"
  : >"$dir/netns"
  trap 'log "up failed; tearing down"; down "$dir" || true' ERR

  local central=${prefix}ovn-c
  add_netns "$dir" "$central"
  start_ovsdb "$dir" "$central" nb "$nb_schema"
  start_ovsdb "$dir" "$central" sb "$sb_schema"
  # shellcheck disable=SC2046
  in_ns "$central" "$dir" ovn-northd $(daemon_opts "$dir" northd) \
    --ovnnb-db="unix:$dir/nb.sock" --ovnsb-db="unix:$dir/sb.sock"

  # The underlay: a bridge in its own namespace, a veth from it to each host, made in those namespaces
  # directly (never in the root one).
  local underlay=${prefix}ovn-u h
  add_netns "$dir" "$underlay"
  ip -n "$underlay" link add ul type bridge
  ip -n "$underlay" link set ul up
  for h in $(seq "$hosts"); do
    add_netns "$dir" "${prefix}ovn-h$h"
    add_netns "$dir" "${prefix}ovn-w$h"
    ip link add ul0 netns "${prefix}ovn-h$h" type veth peer name "h$h" netns "$underlay"
    ip -n "$underlay" link set "h$h" master ul up
  done

  for h in $(seq "$hosts"); do
    local ns=${prefix}ovn-h$h home=$dir/h$h
    mkdir -p "$home"
    start_ovsdb "$home" "$ns" conf "$ovs_schema"
    local vsctl=(ovs-vsctl --db="unix:$home/conf.sock" --timeout=30)
    "${vsctl[@]}" --no-wait init
    # shellcheck disable=SC2046
    in_ns "$ns" "$home" ovs-vswitchd $(daemon_opts "$home" ovs-vswitchd) "unix:$home/conf.sock"

    # Userspace tunnels leave through the bridge that holds the tunnel address (OVS's
    # userspace-tunneling.rst): br-phy with the underlay veth as its port and 10.250.0.N on its own
    # interface.
    "${vsctl[@]}" add-br br-phy -- set Bridge br-phy datapath_type=netdev -- add-port br-phy ul0
    ip -n "$ns" link set ul0 up
    ip -n "$ns" addr add "10.250.0.$h/24" dev br-phy
    ip -n "$ns" link set br-phy up
    "${vsctl[@]}" add-br br-int -- set Bridge br-int datapath_type=netdev fail-mode=secure \
      other-config:disable-in-band=true
    "${vsctl[@]}" set Open_vSwitch . external_ids:system-id="h$h" \
      external_ids:ovn-remote="unix:$dir/sb.sock" external_ids:ovn-encap-type=geneve \
      external_ids:ovn-encap-ip="10.250.0.$h" external_ids:ovn-bridge-datapath-type=netdev
    # ovn-controller has no --unixctl: its control socket is OVN_RUNDIR/ovn-controller.PID.ctl.
    in_ns "$ns" "$home" ovn-controller --detach --no-chdir --pidfile="$home/ovn-controller.pid" \
      --log-file="$home/ovn-controller.log" -vconsole:off "unix:$home/conf.sock"

    # The workload: an internal port of br-int bound to logical port wN, moved into its own namespace.
    local w=${prefix}ovn-w$h
    "${vsctl[@]}" add-port br-int "w$h" -- set Interface "w$h" type=internal external_ids:iface-id="w$h"
    ip -n "$ns" link set "w$h" netns "$w"
    ip -n "$w" link set "w$h" address "0a:00:00:00:00:0$h" mtu 1400 up
    ip -n "$w" addr add "10.0.0.$h/24" dev "w$h"
  done
  trap - ERR
  log "up: NB at unix:$dir/nb.sock; workloads ${prefix}ovn-w1..w$hosts at 10.0.0.1..$hosts"
}

add_workload() {
  local dir=$1 prefix=$2 host=$3 name=$4 iface=$5 mac=$6 address=$7 gateway=$8
  [[ $name =~ ^[a-z0-9][a-z0-9-]{0,14}$ ]] || { log "add-workload: name \"$name\" is not 1-15 of a-z, 0-9, -"; return 2; }
  [ -d "$dir/h$host" ] || { log "add-workload: no host $host in $dir"; return 2; }
  local ns=${prefix}ovn-h$host w=${prefix}ovn-v-$name home=$dir/h$host
  add_netns "$dir" "$w"
  ovs-vsctl --db="unix:$home/conf.sock" --timeout=30 add-port br-int "$name" -- \
    set Interface "$name" type=internal external_ids:iface-id="$iface"
  ip -n "$ns" link set "$name" netns "$w"
  ip -n "$w" link set "$name" address "$mac" mtu 1400 up
  ip -n "$w" addr add "$address" dev "$name"
  ip -n "$w" route add default via "$gateway"
}

add_uplink() {
  local dir=$1 prefix=$2 host=$3 network=$4
  [ -d "$dir/h$host" ] || { log "add-uplink: no host $host in $dir"; return 2; }
  local ns=${prefix}ovn-h$host outside=${prefix}ovn-i home=$dir/h$host
  local vsctl=(ovs-vsctl --db="unix:$home/conf.sock" --timeout=30)
  add_netns "$dir" "$outside"
  # An internal port, like the workloads, not a veth: through a veth the SYN-ACKs of a NATed connection
  # never came back (most likely the checksum the veth leaves to offload, invalid to userspace conntrack).
  "${vsctl[@]}" add-br br-ex -- set Bridge br-ex datapath_type=netdev -- \
    add-port br-ex up0 -- set Interface up0 type=internal
  ip -n "$ns" link set up0 netns "$outside"
  ip -n "$outside" link set up0 up
  "${vsctl[@]}" set Open_vSwitch . external_ids:ovn-bridge-mappings="$network:br-ex"
}

# The processes DIR's pid files name that are still ours: their command line names DIR (a pid file of a
# process long gone may name a pid that was reused since).
our_pids() {
  local dir=$1 pidfile pid
  while IFS= read -r -d '' pidfile; do
    pid=$(cat "$pidfile" 2>/dev/null) || continue
    [[ $pid =~ ^[0-9]+$ ]] || continue
    tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF "$dir" && echo "$pid"
  done < <(find "$dir" -name '*.pid' -print0 2>/dev/null)
  return 0
}

kill_host() {
  local dir=$1 host=$2 name pid
  for name in ovn-controller ovs-vswitchd conf; do
    pid=$(cat "$dir/h$host/$name.pid" 2>/dev/null) || continue
    tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF "$dir" && kill -KILL "$pid"
  done
  return 0
}

down() {
  local dir=$1 pid left ns
  # ovn-controller first, so it does not take the vanishing bridges for drift; the databases last.
  for pattern in ovn-controller ovs-vswitchd northd ''; do
    for pid in $(our_pids "$dir"); do
      tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q "${pattern:-.}" && kill -TERM "$pid" 2>/dev/null
    done
  done
  for _ in $(seq 50); do
    [ -z "$(our_pids "$dir")" ] && break
    sleep 0.1
  done
  for pid in $(our_pids "$dir"); do
    log "down: pid $pid ignored SIGTERM; SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
  done
  if [ -f "$dir/netns" ]; then
    while read -r ns; do
      if [ -n "$ns" ]; then ip netns delete "$ns" 2>/dev/null || true; fi
    done <"$dir/netns"
  fi
  left=0
  sleep 0.1
  for pid in $(our_pids "$dir"); do
    log "down: pid $pid is still running"
    left=1
  done
  if [ -f "$dir/netns" ]; then
    while read -r ns; do
      if [ -n "$ns" ] && [ -e "/run/netns/$ns" ]; then
        log "down: namespace $ns is still there"
        left=1
      fi
    done <"$dir/netns"
  fi
  return "$left"
}

case ${1:-} in
  up) up "${2:?usage: ovn_cluster.sh up DIR PREFIX [N]}" "${3:?usage: ovn_cluster.sh up DIR PREFIX [N]}" "${4:-2}" ;;
  add-workload)
    [ $# -eq 9 ] || { echo "usage: ovn_cluster.sh add-workload DIR PREFIX HOST NAME IFACE_ID MAC ADDRESS/LEN GATEWAY" >&2; exit 2; }
    add_workload "$2" "$3" "$4" "$5" "$6" "$7" "$8" "$9"
    ;;
  add-uplink)
    [ $# -eq 5 ] || { echo "usage: ovn_cluster.sh add-uplink DIR PREFIX HOST NETWORK" >&2; exit 2; }
    add_uplink "$2" "$3" "$4" "$5"
    ;;
  kill-host) kill_host "${2:?usage: ovn_cluster.sh kill-host DIR N}" "${3:?usage: ovn_cluster.sh kill-host DIR N}" ;;
  down) down "${2:?usage: ovn_cluster.sh down DIR}" ;;
  *)
    echo "usage: ovn_cluster.sh up DIR PREFIX [N] | add-workload DIR PREFIX HOST NAME IFACE_ID MAC ADDRESS/LEN GATEWAY | add-uplink DIR PREFIX HOST NETWORK | kill-host DIR N | down DIR" >&2
    exit 2
    ;;
esac
