#!/bin/sh
#SBATCH --job-name=gpu-check
#SBATCH --nodes=1
#SBATCH --ntasks-per-node=1
#SBATCH --gres=gpu:fake:1
#SBATCH --time=00:02:00
#SBATCH --output=gpu-check-%j.out
# Rendered by hpcctl from job 'gpu-check' for cluster 'sandbox'.
set -e
echo "CUDA_VISIBLE_DEVICES=$CUDA_VISIBLE_DEVICES on $SLURMD_NODENAME"
