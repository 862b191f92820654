#!/bin/sh
#SBATCH --job-name=allreduce
#SBATCH --nodes=2
#SBATCH --ntasks-per-node=4
#SBATCH --time=01:00:00
#SBATCH --output=allreduce-%j.out
# Rendered by hpcctl from job 'allreduce' for cluster 'gpuib'.
set -e
export NCCL_DEBUG=INFO
# shellcheck disable=SC2016  # $VARIABLES in the quoted command expand in each task
srun --mpi=pmix '--container-image=registry.example.org#ml/nccl-tests:2.13' '--container-mounts=/home/shared data:/workspace' --container-env=NCCL_DEBUG --container-mpi=openmpi sh -c 'cd /workspace
./all_reduce_perf -b 8 -e 1G -f 2'
