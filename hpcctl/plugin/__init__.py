"""The Python core behind the SPANK shim (spank/): one module per Slurm context, run as `python -I -m MODULE`.

- ``submit``: allocator/local context (sbatch, salloc, srun): validate the options, pin tag -> digest.
- ``step``: remote context (slurmstepd, once per step and node): options + job facts -> MountPlan.
- ``epilog``: job script context: remove the job's named containers.
Each reads one JSON document on stdin and prints one on stdout; a failure is one line on stderr and exit 1.
"""
