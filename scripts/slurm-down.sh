#!/usr/bin/env bash
# Stop the cluster scripts/slurm-up.sh started, by its pid files only; munged too if that
# script started it (it is shared by every cluster on the host).
S=${SLURM_STATE:-/tmp/suanli-slurm}
SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
for f in "$S"/slurmd-*.pid "$S/slurmctld.pid"; do
    [ -f "$f" ] && $SUDO kill "$(cat "$f")" 2>/dev/null
done
if [ -f "$S/munged-started" ] && [ -f /run/munge/munged.pid ]; then
    $SUDO kill "$(cat /run/munge/munged.pid)" 2>/dev/null
    rm -f "$S/munged-started"
fi
sleep 1
true
