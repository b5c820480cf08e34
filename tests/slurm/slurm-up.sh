#!/usr/bin/env bash
# Start a throw-away one-node Slurm cluster (munge + slurmctld + slurmd) under $D, from Debian's packages, as root,
# with FAKE_GPUS fake GPUs (character devices, so Slurm sets CUDA_VISIBLE_DEVICES) and no accounting (no sacct).
#   D=/tmp/frpo-slurm FAKE_GPUS=8 CPUS=8 bash tests/slurm/slurm-up.sh && export SLURM_CONF=/tmp/frpo-slurm/slurm.conf
#   D=/tmp/frpo-slurm bash tests/slurm/slurm-down.sh       # stops the daemons by the PIDs recorded in $D/pids
# Packages: apt-get install -y --no-install-recommends slurmctld slurmd slurm-client munge   (Slurm 22.05 on Debian 12)
# Exit status 3: a daemon or the packages are missing (callers skip); 1: a daemon died (see $D/log).
set -euo pipefail
D=${D:-/tmp/frpo-slurm}; FAKE_GPUS=${FAKE_GPUS:-8}; CPUS=${CPUS:-8}
for p in munged slurmctld slurmd sinfo sbatch; do
  command -v $p >/dev/null || { echo "slurm-up: $p not found; install slurmctld slurmd slurm-client munge" >&2; exit 3; }; done
[ "$(id -u)" = 0 ] || { echo "slurm-up: needs root (SlurmUser=root, device nodes for the fake GPUs)" >&2; exit 3; }
mkdir -p $D/{state,spool,log,gpu,munge}; : > $D/pids
# ports of its own (not Slurm's 6817/6818), so that it runs beside another cluster on the same machine
free_port() { for _ in $(seq 200); do p=$((20000 + RANDOM % 9000)); (exec 3<>/dev/tcp/127.0.0.1/$p) 2>/dev/null || { echo $p; return; }; done; exit 1; }
CTLD_PORT=${CTLD_PORT:-$(free_port)}; SLURMD_PORT=${SLURMD_PORT:-$(free_port)}
# munge with its own key and socket: nothing under /etc or /run is touched
[ -f $D/munge/munge.key ] || dd if=/dev/urandom of=$D/munge/munge.key bs=1024 count=1 status=none
chmod 700 $D/munge; chmod 400 $D/munge/munge.key
munged -F --force --key-file=$D/munge/munge.key --socket=$D/munge/munge.sock \
  --pid-file=$D/munge/munged.pid --log-file=$D/log/munged.log --seed-file=$D/munge/seed >/dev/null 2>&1 &
echo "munged $!" >> $D/pids
gres=""
if [ "$FAKE_GPUS" -gt 0 ]; then   # character devices (like /dev/null): plain files leave CUDA_VISIBLE_DEVICES empty
  for ((i=0; i<FAKE_GPUS; i++)); do [ -e $D/gpu/nvidia$i ] || mknod $D/gpu/nvidia$i c 1 3; done
  gres="Gres=gpu:$FAKE_GPUS"
  echo "NodeName=ci Name=gpu File=$D/gpu/nvidia[0-$((FAKE_GPUS-1))]" > $D/gres.conf
fi
cat > $D/slurm.conf <<EOC
ClusterName=frpo-ci
SlurmctldHost=localhost
SlurmctldPort=$CTLD_PORT
SlurmdPort=$SLURMD_PORT
SlurmUser=root
AuthType=auth/munge
AuthInfo=socket=$D/munge/munge.sock,cred_expire=10
StateSaveLocation=$D/state
SlurmdSpoolDir=$D/spool
SlurmctldPidFile=$D/slurmctld.pid
SlurmdPidFile=$D/slurmd.pid
SlurmctldLogFile=$D/log/slurmctld.log
SlurmdLogFile=$D/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SlurmdParameters=config_overrides
MpiDefault=none
MailProg=/bin/true
GresTypes=gpu
ReturnToService=2
KillWait=5
MinJobAge=600
NodeName=ci NodeHostname=$(hostname -s) NodeAddr=127.0.0.1 CPUs=$CPUS RealMemory=2000 $gres State=UNKNOWN
PartitionName=debug Nodes=ci Default=YES MaxTime=INFINITE State=UP
EOC
export SLURM_CONF=$D/slurm.conf
for i in $(seq 50); do [ -S $D/munge/munge.sock ] && break; sleep 0.1; done
slurmctld -D -i >/dev/null 2>&1 & echo "slurmctld $!" >> $D/pids
slurmd -D -N ci >/dev/null 2>&1 & echo "slurmd $!" >> $D/pids
for i in $(seq 150); do
  while read -r n p; do kill -0 $p 2>/dev/null || { echo "slurm-up: $n died; see $D/log" >&2; exit 1; }; done < $D/pids
  [ "$(timeout 5 sinfo -h -o %T 2>/dev/null)" = idle ] && break; sleep 0.2
done
[ "$(timeout 5 sinfo -h -o %T 2>/dev/null)" = idle ] || { echo "slurm-up: the node is not idle after 30 s; see $D/log" >&2; exit 1; }
sinfo -h -o '%P %N %T cpus=%c gres=%G'
