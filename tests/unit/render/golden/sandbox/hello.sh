#!/bin/sh
#SBATCH --job-name=hello
#SBATCH --nodes=1
#SBATCH --ntasks-per-node=1
#SBATCH --time=00:02:00
#SBATCH --output=hello-%j.out
#SBATCH --container-image=127.0.0.1:5000\#hpcctl/busybox:latest
#SBATCH --container-workdir=/tmp
# Rendered by hpcctl from job 'hello' for cluster 'sandbox'.
set -e
echo "hello from job $SLURM_JOB_ID on $SLURMD_NODENAME as $(id -un) in $(grep '^NAME=' /etc/os-release)"
