#!/bin/sh
#SBATCH --job-name=osu-bw
#SBATCH --nodes=2
#SBATCH --ntasks-per-node=1
#SBATCH --time=00:10:00
#SBATCH --output=osu-bw-%j.out
# Rendered by hpcctl from job 'osu-bw' for cluster 'sandbox'.
set -e
export OMPI_MCA_btl=self,tcp
export PMIX_MCA_gds=hash
srun --mpi=pmix /opt/osu/osu_bw -m 1048576
