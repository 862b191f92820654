"""The one interface to Slurm: submission, status, cancel; `select_backend()` picks commands or pyslurm."""
