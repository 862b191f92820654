"""hpcctl: run container images in Slurm jobs with the host's GPUs and MPI."""

__version__ = "0.1.0"
