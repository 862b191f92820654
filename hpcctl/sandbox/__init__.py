"""`hpcctl sandbox`: a real Slurm cluster, OCI registry and test images on this machine, from nothing."""
