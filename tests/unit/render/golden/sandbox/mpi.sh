#!/bin/sh
#SBATCH --job-name=mpi-ranks
#SBATCH --nodes=2
#SBATCH --ntasks-per-node=2
#SBATCH --time=00:05:00
#SBATCH --output=mpi-ranks-%j.out
# Rendered by hpcctl from job 'mpi-ranks' for cluster 'sandbox'.
set -e
# shellcheck disable=SC2016  # $VARIABLES in the quoted command expand in each task
srun --mpi=pmix '--container-image=127.0.0.1:5000#hpcctl/debian:bookworm' --container-workdir=/tmp --container-env=SLURM_NTASKS sh -c 'echo "rank $PMIX_RANK of $SLURM_NTASKS on $SLURMD_NODENAME"'
