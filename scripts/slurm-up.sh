#!/usr/bin/env bash
# A real single-host Slurm cluster with fake GPUs, for tests and demos (adapted from a tested
# recipe): munge, slurmctld and two slurmd on 127.0.0.1, no systemd. Two partitions stand for
# two sites of tests/service/data/network.yaml:
#   partition east-1: node east1, Gres=gpu:h100:4   (fake device files made with mknod)
#   partition west-1: node west1, Gres=gpu:a800:8
# Everything (config, state, logs, pid files) lives in $SLURM_STATE (default /tmp/suanli-slurm);
# clients find the cluster through SLURM_CONF=$SLURM_STATE/slurm.conf (written to $SLURM_STATE/env).
# Stop it with scripts/slurm-down.sh. Runs as root (or with sudo for apt, mknod and munge).
set -euo pipefail
S=${SLURM_STATE:-/tmp/suanli-slurm}
CTLD_PORT=${SLURM_CTLD_PORT:-6817}
SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
PKGS="slurmctld slurmd slurm-client munge"
export DEBIAN_FRONTEND=noninteractive
if ! dpkg -s $PKGS >/dev/null 2>&1; then
    $SUDO apt-get update -qq
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $PKGS >/dev/null
fi
$SUDO mkdir -p "$S/ctld" "$S/log" "$S/fakegpu"
$SUDO chmod 755 "$S"
for i in 0 1 2 3 4 5 6 7 8 9 10 11; do
    [ -e "$S/fakegpu/nvidia$i" ] || $SUDO mknod "$S/fakegpu/nvidia$i" c 195 "$i"
done

# munge: one key, one daemon (shared with any other cluster on this host)
[ -s /etc/munge/munge.key ] || $SUDO mungekey --create
$SUDO chown munge:munge /etc/munge/munge.key
$SUDO chmod 400 /etc/munge/munge.key
$SUDO mkdir -p /run/munge
$SUDO chown munge:munge /run/munge
if ! munge -n </dev/null >/dev/null 2>&1; then
    $SUDO runuser -u munge -- /usr/sbin/munged
    touch "$S/munged-started"                 # slurm-down.sh stops only a munged started here
    for _ in $(seq 1 40); do munge -n </dev/null >/dev/null 2>&1 && break; sleep 0.25; done
fi

cat > "$S/slurm.conf" <<CONF
ClusterName=suanli-test
SlurmctldHost=localhost
SlurmctldPort=$CTLD_PORT
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
StateSaveLocation=$S/ctld
SlurmdSpoolDir=$S/d-%n
SlurmctldPidFile=$S/slurmctld.pid
SlurmdPidFile=$S/slurmd-%n.pid
SlurmctldLogFile=$S/log/slurmctld.log
SlurmdLogFile=$S/log/slurmd-%n.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
MailProg=/bin/true
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/filetxt
JobCompLoc=$S/jobcomp.txt
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
GresTypes=gpu
ReturnToService=2
MinJobAge=600
KillWait=2
SlurmdParameters=config_overrides
NodeName=east1 NodeHostname=localhost NodeAddr=127.0.0.1 Port=$((CTLD_PORT + 1)) CPUs=16 RealMemory=64000 Gres=gpu:h100:4 State=UNKNOWN
NodeName=west1 NodeHostname=localhost NodeAddr=127.0.0.1 Port=$((CTLD_PORT + 2)) CPUs=16 RealMemory=64000 Gres=gpu:a800:8 State=UNKNOWN
PartitionName=east-1 Nodes=east1 Default=YES MaxTime=INFINITE State=UP
PartitionName=west-1 Nodes=west1 MaxTime=INFINITE State=UP
CONF
cat > "$S/gres.conf" <<CONF
AutoDetect=off
NodeName=east1 Name=gpu Type=h100 File=$S/fakegpu/nvidia[0-3]
NodeName=west1 Name=gpu Type=a800 File=$S/fakegpu/nvidia[4-11]
CONF
export SLURM_CONF="$S/slurm.conf"
echo "export SLURM_CONF=$SLURM_CONF" > "$S/env"

$SUDO env SLURM_CONF="$SLURM_CONF" /usr/sbin/slurmctld
$SUDO env SLURM_CONF="$SLURM_CONF" /usr/sbin/slurmd -N east1
$SUDO env SLURM_CONF="$SLURM_CONF" /usr/sbin/slurmd -N west1
for _ in $(seq 1 60); do
    [ "$(sinfo -h -o %T 2>/dev/null | sort -u)" = idle ] && break
    sleep 0.5
done
if [ "$(sinfo -h -o %T 2>/dev/null | sort -u)" != idle ]; then
    echo "slurm-up: nodes not idle" >&2; sinfo -N -l >&2 || true; tail -20 "$S/log/slurmctld.log" >&2 || true
    exit 1
fi
echo "slurm up (SLURM_CONF=$SLURM_CONF): $(sinfo -h -o '%P %D %T %G' | tr '\n' ';')"
