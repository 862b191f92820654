/* One entry point per Slurm context; hpcctl_spank.c dispatches to them. */
#ifndef HPCCTL_CONTEXTS_H
#define HPCCTL_CONTEXTS_H

#include <slurm/spank.h>

#include "helper.h"

/* allocator (sbatch, salloc) and local (srun): validate options and pin the image at submit time */
int ctx_local_post_opt(spank_t sp, const struct helper_config *cfg);

/* remote (slurmstepd) */
int ctx_remote_post_opt(spank_t sp);
int ctx_remote_user_init(spank_t sp, const struct helper_config *cfg);
int ctx_remote_task_privileged(spank_t sp);
int ctx_remote_task_init(spank_t sp);
int ctx_remote_task_exit(spank_t sp);
int ctx_remote_exit(spank_t sp);

/* slurmd / job script: remove the job's named containers after it ends */
int ctx_slurmd_job_epilog(spank_t sp, int ac, char **av);

/* slurmd / job script, at allocation (PrologFlags=Alloc): start fetching the job's pinned image, return at once */
int ctx_slurmd_job_prolog(spank_t sp, int ac, char **av);

/* Name of the variable that carries the digest pinned at submit time: "<reference> <reference@digest>". */
#define PINNED_ENV "HPCCTL_CONTAINER_PINNED"

/* The job control variable (the prolog sees it as SPANK_HPCCTL_PREFETCH) that carries the same pin to the prolog. */
#define PREFETCH_ENV "HPCCTL_PREFETCH"

#endif
