/*
 * hpcctl SPANK plugin: --container-image and friends for sbatch, srun and salloc (pyxis-compatible).
 * Decisions live in the Python core (hpcctl/plugin), run by fork/exec with a clean environment; this shim
 * registers the options and performs the syscalls that must happen in slurmstepd and the task.
 */
#include <slurm/spank.h>
#include <stdio.h>

#include "contexts.h"
#include "helper.h"
#include "opts.h"

SPANK_PLUGIN(hpcctl, 1);

static struct helper_config config;

int slurm_spank_init(spank_t sp, int ac, char **av)
{
    char err[512];
    spank_context_t ctx = spank_context();
    if (ctx != S_CTX_LOCAL && ctx != S_CTX_ALLOCATOR && ctx != S_CTX_REMOTE && ctx != S_CTX_JOB_SCRIPT)
        return 0;
    if (helper_config_parse(&config, ac, av, err, sizeof(err))) {
        slurm_error("hpcctl: %s", err);
        return -1;
    }
    return ctx == S_CTX_JOB_SCRIPT ? 0 : opts_register(sp);
}

int slurm_spank_init_post_opt(spank_t sp, int ac, char **av)
{
    (void)ac;
    (void)av;
    switch (spank_context()) {
    case S_CTX_LOCAL:
    case S_CTX_ALLOCATOR:
        return ctx_local_post_opt(sp, &config);
    case S_CTX_REMOTE:
        return ctx_remote_post_opt(sp);
    default:
        return 0;
    }
}

int slurm_spank_user_init(spank_t sp, int ac, char **av)
{
    (void)ac;
    (void)av;
    return spank_context() == S_CTX_REMOTE ? ctx_remote_user_init(sp, &config) : 0;
}

int slurm_spank_task_init_privileged(spank_t sp, int ac, char **av)
{
    (void)ac;
    (void)av;
    return spank_context() == S_CTX_REMOTE ? ctx_remote_task_privileged(sp) : 0;
}

int slurm_spank_task_init(spank_t sp, int ac, char **av)
{
    (void)ac;
    (void)av;
    return spank_context() == S_CTX_REMOTE ? ctx_remote_task_init(sp) : 0;
}

int slurm_spank_task_exit(spank_t sp, int ac, char **av)
{
    (void)ac;
    (void)av;
    return spank_context() == S_CTX_REMOTE ? ctx_remote_task_exit(sp) : 0;
}

int slurm_spank_exit(spank_t sp, int ac, char **av)
{
    (void)ac;
    (void)av;
    return spank_context() == S_CTX_REMOTE ? ctx_remote_exit(sp) : 0;
}

int slurm_spank_job_prolog(spank_t sp, int ac, char **av)
{
    return ctx_slurmd_job_prolog(sp, ac, av);
}

int slurm_spank_job_epilog(spank_t sp, int ac, char **av)
{
    return ctx_slurmd_job_epilog(sp, ac, av);
}
