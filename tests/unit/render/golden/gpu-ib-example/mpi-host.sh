#!/bin/sh
#SBATCH --job-name=osu-bw
#SBATCH --nodes=2
#SBATCH --ntasks-per-node=1
#SBATCH --time=00:10:00
#SBATCH --output=osu-bw-%j.out
# Rendered by hpcctl from job 'osu-bw' for cluster 'gpuib'.
set -e
export OMPI_MCA_pml=ucx
export OMPI_MCA_btl='^openib,smcuda'
export UCX_TLS=rc,sm,cuda_copy,cuda_ipc,gdr_copy
export UCX_NET_DEVICES=mlx5_0:1
export PMIX_MCA_gds=hash
srun --mpi=pmix /opt/osu/osu_bw -m 1048576
