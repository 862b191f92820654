#!/bin/sh
#SBATCH --job-name=prepare
#SBATCH --nodes=1
#SBATCH --ntasks-per-node=1
#SBATCH --time=00:02:00
#SBATCH --output=prepare-%j.out
# Rendered by hpcctl from job 'prepare' for cluster 'sandbox'.
set -e
echo "data ready" > pipeline-data.txt
