#!/bin/sh
#SBATCH --job-name=train
#SBATCH --nodes=1
#SBATCH --ntasks-per-node=1
#SBATCH --gres=gpu:1
#SBATCH --time=00:02:00
#SBATCH --output=train-%j.out
# Rendered by hpcctl from job 'train' for cluster 'sandbox'.
set -e
sh -c 'cat pipeline-data.txt && echo trained >> pipeline-data.txt'
