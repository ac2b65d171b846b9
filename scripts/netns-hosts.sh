#!/usr/bin/env bash
# Network-namespace SSH hosts for sky-rs tests (see ../shared/emulators.md section 5).
#   netns-hosts.sh up|down|status
# Environment (all optional):
#   N=3                 number of hosts
#   W=/tmp/skyhosts/run state dir (keys, known_hosts, per-host dirs, pids)
#   BR=skybr0           bridge name (root namespace side)
#   NS=skyh             namespace prefix: hosts are $NS$i
#   VETH=vsky           root-side veth prefix: $VETH$i (cut a host's link with `ip link set $VETH$i down`)
#   NET=10.200.0        first three octets
#   BASE=10             host i gets $NET.$((BASE+i)); the bridge gets $NET.$((BASE-9)) when BASE>10, else $NET.1
#   PREFIX=24           prefix length of the bridge's subnet
#   INSTALL=1           apt-get install openssh-server rsync when sshd or rsync is missing
# Each host's $W/$NS$i/bin comes first on its SSH sessions' PATH (programs only that host has).
# Only addresses in 10.200.0.0/24 are ever configured, all inside namespaces this script made.
set -euo pipefail
N=${N:-3}; W=${W:-/tmp/skyhosts/run}; BR=${BR:-skybr0}; NS=${NS:-skyh}; VETH=${VETH:-vsky}
NET=${NET:-10.200.0}; BASE=${BASE:-10}; PREFIX=${PREFIX:-24}; INSTALL=${INSTALL:-1}
BRIP=${BRIP:-$NET.1}

install() {
  if [ -x /usr/sbin/sshd ] && command -v rsync >/dev/null && command -v setsid >/dev/null; then return 0; fi
  [ "$INSTALL" = 1 ] || { echo "sshd or rsync missing and INSTALL=0" >&2; exit 3; }
  export DEBIAN_FRONTEND=noninteractive
  # Parallel test runs may all find sshd missing: one installs, the others wait (dpkg's lock
  # would otherwise fail them).
  (
    flock 9
    if [ -x /usr/sbin/sshd ] && command -v rsync >/dev/null; then exit 0; fi
    apt-get install -y openssh-server rsync >/dev/null 2>&1 || { apt-get update >/dev/null && apt-get install -y openssh-server rsync >/dev/null; }
  ) 9>/tmp/sky-netns-install.lock
}

up() {
  install
  mkdir -p "$W" /run/sshd
  id sky >/dev/null 2>&1 || useradd -m -s /bin/bash -p '*' sky 2>/dev/null || id sky >/dev/null
  [ -f "$W/id_ed25519" ] || ssh-keygen -q -t ed25519 -N '' -C sky-test -f "$W/id_ed25519"
  ip link add "$BR" type bridge
  ip addr add "$BRIP/$PREFIX" dev "$BR"
  ip link set "$BR" up
  : > "$W/known_hosts"; : > "$W/sshd.pids"
  for i in $(seq 1 "$N"); do
    ns=$NS$i; ip4=$NET.$((BASE+i)); d=$W/$ns
    mkdir -p "$d/home/.ssh" "$d/bin"
    ip netns add "$ns"
    ip link add "$VETH$i" type veth peer name eth0 netns "$ns"
    ip link set "$VETH$i" master "$BR" up
    ip -n "$ns" link set lo up
    ip -n "$ns" addr add "$ip4/$PREFIX" dev eth0
    ip -n "$ns" link set eth0 up
    ssh-keygen -q -t ed25519 -N '' -C "$ns" -f "$d/ssh_host_ed25519_key"
    cp "$W/id_ed25519.pub" "$d/home/.ssh/authorized_keys"
    chown -R sky:sky "$d/home"; chmod 700 "$d/home/.ssh"; chmod 600 "$d/home/.ssh/authorized_keys"
    cat > "$d/sshd_config" <<CFG
ListenAddress $ip4:22
HostKey $d/ssh_host_ed25519_key
PidFile $d/sshd.pid
AuthorizedKeysFile .ssh/authorized_keys
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin no
UsePAM no
StrictModes no
AllowUsers sky
MaxStartups 100:30:200
MaxSessions 100
Subsystem sftp internal-sftp
# The host's own programs (a test puts a GPU driver's nvidia-smi there) come first.
SetEnv PATH=$d/bin:/usr/local/bin:/usr/bin:/bin
CFG
    ip netns exec "$ns" unshare --mount --uts --propagation private \
       sh -c "hostname '$ns' && mount --bind '$d/home' /home/sky && exec /usr/sbin/sshd -f '$d/sshd_config' -E '$d/sshd.log'"
    for _ in $(seq 1 100); do [ -s "$d/sshd.pid" ] && break; sleep 0.02; done
    echo "$ns $ip4 $(cat "$d/sshd.pid")" >> "$W/sshd.pids"
    echo "$ip4 $(cut -d' ' -f1,2 "$d/ssh_host_ed25519_key.pub")" >> "$W/known_hosts"
  done
  for i in $(seq 1 "$N"); do d=$W/$NS$i
    install -o sky -g sky -m 600 "$W/id_ed25519" "$d/home/.ssh/id_ed25519"
    install -o sky -g sky -m 644 "$W/known_hosts" "$d/home/.ssh/known_hosts"
  done
  cat "$W/sshd.pids"
}

down() {
  if [ -f "$W/sshd.pids" ]; then
    while read -r ns _ pid; do
      # Kill the host's sshd and every process left in its namespace (the cluster's).
      for p in $(ip netns pids "$ns" 2>/dev/null); do kill -KILL "$p" 2>/dev/null || true; done
      if tr '\0' ' ' < "/proc/$pid/cmdline" 2>/dev/null | grep -q -- "-f $W/$ns/sshd_config"; then kill "$pid" 2>/dev/null || true; fi
    done < "$W/sshd.pids"
  fi
  for i in $(seq 1 "$N"); do ip netns del "$NS$i" 2>/dev/null || true; done
  ip link del "$BR" 2>/dev/null || true
  rm -rf "$W"
}

case "${1:-}" in
  up) up ;;
  down) down ;;
  status) [ -f "$W/sshd.pids" ] && cat "$W/sshd.pids" || echo "no hosts under $W" ;;
  *) echo "usage: $0 up|down|status" >&2; exit 2 ;;
esac
