#!/bin/sh
#SBATCH --job-name=llm-train
#SBATCH --partition=gpu-h100
#SBATCH --account=ml-team
#SBATCH --qos=high
#SBATCH --nodes=4
#SBATCH --ntasks-per-node=8
#SBATCH --cpus-per-task=12
#SBATCH --mem=512000M
#SBATCH --gres=gpu:h100:8
#SBATCH --time=12:00:00
#SBATCH --array=0-2%1
#SBATCH --output=llm-train-%A_%a.out
# Rendered by hpcctl from job 'llm-train' for cluster 'gpuib'.
set -e
# shellcheck disable=SC2016  # $VARIABLES in the quoted command expand in each task
srun --mpi=pmi2 '--container-image=nvcr.io#nvidia/nemo:24.05' --container-mounts=/lustre/ckpt:/ckpt,/lustre/cfg:/cfg:ro --container-workdir=/ckpt --container-writable --no-container-entrypoint --container-mpi=mpich sh -c 'python -m train --config /cfg/llm.yaml'
