#!/usr/bin/env bash
# A throw-away single-node Slurm (Debian slurm-wlm 22.05 + munge) for the opt-in test
# tests/test_slurm.py::test_pipeline_on_real_slurm (HICMIX_REAL_SLURM=1).
#
#   tests/real_slurm/start.sh [DIR]        install if needed, write DIR/slurm.conf, start munged,
#                                          slurmctld and slurmd, wait until the node is idle
#   tests/real_slurm/start.sh stop [DIR]   stop the three daemons started from DIR
#
# DIR defaults to /tmp/hicmix-real-slurm. Needs root (apt-get, daemons). Outside DIR it writes only
# the Debian packages and the links /etc/slurm/{slurm,gres}.conf -> DIR (removed by `stop`; an
# existing real file there makes the script refuse). SLURM_CONF alone is not enough: the Slurm
# job-step plugin drops every SLURM_* variable except the job's identity before it calls srun
# inside the job, so srun must find the configuration at its default path.
#
# The node advertises more than the machine has (SlurmdParameters=config_overrides: 64 CPUs,
# 512 GB, 4 GPUs on fake device files) so that jobs keep the resources their rules ask for, and
# it sits in two partitions named like profiles/slurm/partitions.yaml: cpu (default) and gpu.
# There is no slurmdbd: sacct cannot answer, so Snakemake must use squeue for job status
# (MinJobAge is high so that finished jobs stay visible). sacctmgr fails and sshare reports no
# account, so the plugin skips account validation with a warning, and Slurm, enforcing nothing,
# accepts the profile's -A CHANGE_ME.
set -euo pipefail

action=start
if [[ "${1:-}" == "stop" ]]; then
  action=stop
  shift
fi
dir=$(realpath -m "${1:-/tmp/hicmix-real-slurm}")

running() { # a live process; a zombie (its parent never reaped it) counts as gone
  [[ -r "/proc/$1/stat" ]] && [[ "$(cut -d' ' -f3 "/proc/$1/stat")" != Z ]]
}

stop_daemons() {
  local name pid
  for name in slurmd slurmctld munged; do
    pid=$(cat "$dir/$name.pid" 2>/dev/null || true)
    if [[ -n "$pid" ]] && running "$pid"; then
      kill -TERM "$pid"
      for _ in $(seq 50); do
        running "$pid" || break
        sleep 0.2
      done
    fi
    rm -f "$dir/$name.pid"
  done
}

unlink_conf() {
  local name
  for name in slurm.conf gres.conf; do
    if [[ -L "/etc/slurm/$name" && "$(readlink "/etc/slurm/$name")" == "$dir/$name" ]]; then
      rm -f "/etc/slurm/$name"
    fi
  done
}

if [[ "$action" == "stop" ]]; then
  stop_daemons
  unlink_conf
  echo "stopped the Slurm daemons of $dir"
  exit 0
fi

start=$(date +%s)
if ! command -v slurmctld >/dev/null || ! command -v munged >/dev/null || ! command -v sbatch >/dev/null; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends slurmctld slurmd slurm-client munge >/dev/null
fi
installed=$(date +%s)

mkdir -p "$dir"
stop_daemons                     # a previous run from the same DIR
rm -rf "$dir"/{state,spool,log} # and no jobs recovered from it
mkdir -p "$dir"/{state,spool,log,munge}
chmod 0755 "$dir/munge"

# munge: own key and socket, so a system munged (if any) is left alone
if [[ ! -s "$dir/munge/munge.key" ]]; then
  dd if=/dev/urandom of="$dir/munge/munge.key" bs=1024 count=1 status=none
  chmod 0400 "$dir/munge/munge.key"
fi
socket="$dir/munge/munge.socket"
munged --force --key-file="$dir/munge/munge.key" --socket="$socket" \
  --pid-file="$dir/munged.pid" --log-file="$dir/log/munged.log" --seed-file="$dir/munge/seed"

host=$(hostname -s)
for gpu in 0 1 2 3; do : >"$dir/fake-gpu$gpu"; done
cat >"$dir/gres.conf" <<EOF
NodeName=$host Name=gpu Type=a100 File=$dir/fake-gpu[0-3]
EOF
cat >"$dir/slurm.conf" <<EOF
ClusterName=hicmix-test
SlurmctldHost=$host
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$socket
SlurmUser=root
SlurmdUser=root
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool
SlurmctldPidFile=$dir/slurmctld.pid
SlurmdPidFile=$dir/slurmd.pid
SlurmctldLogFile=$dir/log/slurmctld.log
SlurmdLogFile=$dir/log/slurmd.log
SlurmctldPort=16817
SlurmdPort=16818
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
SchedulerType=sched/builtin
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
GresTypes=gpu
MinJobAge=3600
ReturnToService=2
SlurmdParameters=config_overrides
MpiDefault=none
NodeName=$host CPUs=64 RealMemory=512000 Gres=gpu:a100:4 State=UNKNOWN
PartitionName=cpu Nodes=$host Default=YES MaxTime=2880 State=UP OverSubscribe=FORCE:4
PartitionName=gpu Nodes=$host Default=NO MaxTime=2880 State=UP OverSubscribe=FORCE:4
EOF
mkdir -p /etc/slurm
for name in slurm.conf gres.conf; do
  if [[ -e "/etc/slurm/$name" && ! -L "/etc/slurm/$name" ]]; then
    echo "error: /etc/slurm/$name exists (a real cluster?); this script only runs where it does not" >&2
    stop_daemons
    exit 1
  fi
  ln -sfn "$dir/$name" "/etc/slurm/$name"
done

slurmctld
slurmd

for _ in $(seq 150); do
  state=$(sinfo -h -N -o %T 2>/dev/null | head -1 || true)
  if [[ "$state" == idle* || "$state" == mixed* ]]; then
    break
  fi
  sleep 0.2
done
if [[ "$state" != idle* && "$state" != mixed* ]]; then
  echo "error: the Slurm node did not become idle (state '${state:-none}'); see $dir/log" >&2
  stop_daemons
  unlink_conf
  exit 1
fi
ready=$(date +%s)
echo "Slurm up in $((ready - start)) s (install $((installed - start)) s, daemons $((ready - installed)) s)"
