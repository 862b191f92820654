#!/bin/sh
#SBATCH --job-name=report
#SBATCH --nodes=1
#SBATCH --ntasks-per-node=1
#SBATCH --time=00:02:00
#SBATCH --output=report-%j.out
# Rendered by hpcctl from job 'report' for cluster 'sandbox'.
set -e
echo "report after train:"
cat pipeline-data.txt
