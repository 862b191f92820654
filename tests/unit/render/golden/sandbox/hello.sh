#!/bin/sh
#SBATCH --job-name=hello
#SBATCH --nodes=1
#SBATCH --ntasks-per-node=1
#SBATCH --time=00:02:00
#SBATCH --output=hello-%j.out
# Rendered by hpcctl from job 'hello' for cluster 'sandbox'.
set -e
echo "hello from $SLURMD_NODENAME in job $SLURM_JOB_ID"
