#!/usr/bin/env bash
# Start a single-node Slurm on this machine (as root) for tests/test_slurm.py.
#
# Installs Debian's slurmctld/slurmd/slurm-client/munge, writes a one-node slurm.conf, starts
# munged, slurmctld and slurmd, and waits until `sinfo` shows the node idle. Idempotent: when a
# node is already idle it does nothing; daemons that run are left running. Debian 12's Slurm 22.05 needs no
# cgroup.conf here (CgroupPlugin=disabled makes slurmd fail), and munged needs /run/munge owned by munge.
set -euo pipefail

idle() { command -v sinfo >/dev/null && [ -n "$(sinfo -h -t idle,mix -o %n 2>/dev/null)" ]; }

if idle; then
  echo "slurm: already up ($(sinfo -h -o '%P %D %t' | head -1))"
  exit 0
fi
if [ "$(id -u)" != 0 ]; then
  echo "slurm: must run as root to install and start Slurm" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
if ! command -v slurmctld >/dev/null || ! command -v slurmd >/dev/null || ! command -v sinfo >/dev/null \
   || ! command -v munged >/dev/null; then
  apt-get install -y -q slurmctld slurmd slurm-client munge >/dev/null 2>&1 \
    || { apt-get update -q >/dev/null && apt-get install -y -q slurmctld slurmd slurm-client munge >/dev/null; }
fi

# --- munge -------------------------------------------------------------------------------------
if [ ! -s /etc/munge/munge.key ]; then
  if command -v mungekey >/dev/null; then mungekey --create --force >/dev/null
  else dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 status=none; fi
  chown munge:munge /etc/munge/munge.key && chmod 400 /etc/munge/munge.key
fi
mkdir -p /run/munge /var/log/munge /var/lib/munge
chown -R munge:munge /run/munge /var/log/munge /var/lib/munge
if ! munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
  # As the munge user (its files are munge's); as root only with --force.
  runuser -u munge -- munged 2>/dev/null || munged --force
  for _ in $(seq 50); do munge -n 2>/dev/null | unmunge >/dev/null 2>&1 && break; sleep 0.1; done
fi

# --- slurm.conf --------------------------------------------------------------------------------
host=$(hostname -s)
mkdir -p /etc/slurm /var/spool/slurmctld /var/spool/slurmd /var/log/slurm
# The node line as slurmd sees the hardware (CPUs, sockets, memory), so the node is never drained
# for a mismatch; memory kept a little below the total.
node=$(slurmd -C | head -1 | sed "s/^NodeName=[^ ]*/NodeName=$host/")
mem=$(sed -n 's/.*RealMemory=\([0-9]*\).*/\1/p' <<<"$node")
node=$(sed "s/RealMemory=[0-9]*/RealMemory=$(( mem * 9 / 10 ))/" <<<"$node")
conf=$(cat <<CONF
# Written by scripts/ci/slurm.sh: single-node Slurm for tests.
ClusterName=ltbench
SlurmctldHost=$host
AuthType=auth/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SlurmUser=root
SlurmdUser=root
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
ReturnToService=2
MpiDefault=none
SchedulerType=sched/backfill
JobAcctGatherType=jobacct_gather/none
$node State=UNKNOWN
PartitionName=debug Nodes=$host Default=YES MaxTime=INFINITE State=UP
CONF
)
if [ "$(cat /etc/slurm/slurm.conf 2>/dev/null)" != "$conf" ]; then
  printf '%s\n' "$conf" > /etc/slurm/slurm.conf
  changed=1
fi

# --- daemons -----------------------------------------------------------------------------------
running() { [ -s "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }
if running /run/slurmctld.pid; then
  [ -n "${changed:-}" ] && scontrol reconfigure
else
  slurmctld
fi
running /run/slurmd.pid || slurmd

for _ in $(seq 60); do
  idle && break
  state=$(sinfo -h -n "$host" -o %t 2>/dev/null || true)
  case "$state" in
    down*|drain*|fail*) scontrol update NodeName="$host" State=RESUME 2>/dev/null || true ;;
  esac
  sleep 0.5
done
if ! idle; then
  echo "slurm: node $host did not become idle:" >&2
  sinfo >&2 || true
  tail -n 20 /var/log/slurm/slurmctld.log /var/log/slurm/slurmd.log >&2 || true
  exit 1
fi
echo "slurm: up ($(sinfo -h -o '%P %D %t' | head -1))"
