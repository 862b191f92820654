#!/bin/sh
#SBATCH --job-name=sweep
#SBATCH --nodes=1
#SBATCH --ntasks-per-node=1
#SBATCH --time=00:02:00
#SBATCH --array=0-3%2
#SBATCH --output=sweep-%A_%a.out
# Rendered by hpcctl from job 'sweep' for cluster 'sandbox'.
set -e
export OMP_NUM_THREADS=1
echo "task $SLURM_ARRAY_TASK_ID of array $SLURM_ARRAY_JOB_ID, learning rate 0.0$SLURM_ARRAY_TASK_ID"
