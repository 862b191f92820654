#!/bin/sh
#SBATCH --job-name=preprocess
#SBATCH --nodes=1
#SBATCH --ntasks-per-node=1
#SBATCH --cpus-per-task=4
#SBATCH --mem=16384M
#SBATCH --time=00:30:00
#SBATCH --output=logs/%x-%j.out
#SBATCH --error=logs/%x-%j.err
#SBATCH --exclusive
#SBATCH --mail-type=END
#SBATCH --comment="preprocess #1, see README"
#SBATCH --container-image=nvcr.io\#nvidia/pytorch:24.01-py3
#SBATCH --container-mounts=/data/in:/in:ro,/scratch/run:/out
#SBATCH --container-workdir=/out
#SBATCH --container-env=HF_TOKEN
#SBATCH --container-readonly
#SBATCH --container-entrypoint
# Rendered by hpcctl from job 'preprocess' for cluster 'sandbox'.
set -e
export STAGE=preprocess
export DEBUG=true
python3 -c 'import os; print(os.getcwd(), os.environ['"'"'STAGE'"'"'])'
