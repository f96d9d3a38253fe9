#!/usr/bin/env bash
# A one-node Slurm on localhost for the Slurm test (a recipe tested on the development machines; see ci/README.md):
#   ci/slurm-local.sh start   install slurm-wlm and munge (apt, as root), configure, start, wait idle
#   ci/slurm-local.sh stop    stop slurmd, slurmctld and munged (by their pid files)
#   ci/slurm-local.sh check   exit 0 if this machine can run it (root, apt-get), else say why, exit 2
# CPU only, no cgroups, no accounting. Everything it writes lives under /etc/slurm, /etc/munge,
# /var/spool/slurm*, /var/log/slurm and /run: run it on a CI or throwaway machine, not a cluster.
set -euo pipefail

host=$(hostname)
cpus=$(nproc)
conf=/etc/slurm/slurm.conf

can_run() {
  if [[ $(id -u) != 0 ]]; then echo "not root (installing Slurm needs root)"; return 1; fi
  if ! command -v apt-get >/dev/null 2>&1; then echo "no apt-get (the recipe is Debian's packages)"; return 1; fi
  if [[ -f $conf && ! -f /etc/slurm/.gh-suite-local ]]; then echo "$conf exists and is not ours: not touching a real Slurm"; return 1; fi
  return 0
}

wait_for() { # wait_for SECONDS DESCRIPTION COMMAND...
  local limit=$1 what=$2; shift 2
  for _ in $(seq "$limit"); do "$@" >/dev/null 2>&1 && return 0; sleep 1; done
  echo "slurm-local: $what did not happen within $limit s" >&2
  return 1
}

start() {
  if ! why=$(can_run); then echo "slurm-local: cannot start: $why" >&2; exit 2; fi
  if ! command -v slurmctld >/dev/null 2>&1 || ! command -v munged >/dev/null 2>&1; then
    echo "slurm-local: installing slurm-wlm and munge"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q slurm-wlm munge >/dev/null \
      || { apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q slurm-wlm munge >/dev/null; }
  fi
  # munge: a key, its directories owned by the munge user, the daemon run as that user.
  mkdir -p /etc/munge /var/lib/munge /var/log/munge /run/munge
  if [[ ! -s /etc/munge/munge.key ]]; then
    dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 status=none
  fi
  chown -R munge:munge /etc/munge /var/lib/munge /var/log/munge /run/munge
  chmod 400 /etc/munge/munge.key
  if ! munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
    su -s /bin/sh munge -c /usr/sbin/munged
    wait_for 10 "munged answering" sh -c 'munge -n | unmunge'
  fi
  mkdir -p /etc/slurm /var/spool/slurmctld /var/spool/slurmd /var/log/slurm
  cat > "$conf" <<EOF
# Written by ci/slurm-local.sh: a one-node test cluster on $host.
ClusterName=gh-suite-local
SlurmctldHost=$host
SlurmUser=root
AuthType=auth/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
JobAcctGatherType=jobacct_gather/none
ReturnToService=2
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
MpiDefault=none
KillWait=20
NodeName=$host CPUs=$cpus RealMemory=4000 State=UNKNOWN
PartitionName=debug Nodes=$host Default=YES MaxTime=INFINITE State=UP
EOF
  touch /etc/slurm/.gh-suite-local
  pgrep -x slurmctld >/dev/null || /usr/sbin/slurmctld
  pgrep -x slurmd >/dev/null || /usr/sbin/slurmd
  wait_for 30 "the node becoming idle" sh -c "sinfo -h -N -o %T | grep -qx idle"
  echo "slurm-local: one-node Slurm up on $host ($cpus CPUs): $(sinfo -h -o '%P %a %D %T')"
}

stop() {
  for pidfile in /run/slurmd.pid /run/slurmctld.pid; do
    [[ -f $pidfile ]] && kill "$(cat "$pidfile")" 2>/dev/null || true
  done
  pkill -x munged 2>/dev/null || true
  echo "slurm-local: stopped"
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  check) if why=$(can_run); then echo "slurm-local: can run here"; else echo "slurm-local: cannot run here: $why"; exit 2; fi ;;
  *) echo "usage: $0 start|stop|check" >&2; exit 2 ;;
esac
