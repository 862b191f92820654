/* job script context (slurmd, as root): before the job, start fetching its image on this node; after the job, remove
 * the job's named containers on this node. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include "contexts.h"

int ctx_slurmd_job_epilog(spank_t sp, int ac, char **av)
{
    uint32_t jobid = 0, uid = 0;
    char err[1024];
    json_t *out = NULL;
    struct helper_config config;
    if (helper_config_parse(&config, ac, av, err, sizeof(err))) {
        slurm_error("hpcctl: %s", err);
        return 0;
    }
    const struct helper_config *cfg = &config;
    if (spank_get_item(sp, S_JOB_ID, &jobid) != ESPANK_SUCCESS)
        return 0;
    spank_get_item(sp, S_JOB_UID, &uid);
    json_t *input = json_pack("{s:I, s:I}", "jobid", (json_int_t)jobid, "uid", (json_int_t)uid);
    if (helper_run(cfg, "hpcctl.plugin.epilog", input, 1, 60, -1, &out, err, sizeof(err)))
        slurm_error("hpcctl: job %u epilog: %s", jobid, err);
    json_decref(input);
    json_decref(out);
    return 0;
}

#define PREFETCH_SECONDS 1800 /* a pull and conversion of a large image; the first step joins it meanwhile */

/* The prolog (PrologFlags=Alloc: at allocation, on every node of the job): the submit-time pin reaches it through
 * the job control environment (SPANK_HPCCTL_PREFETCH, the user's to set: checked in Python like any reference).
 * A detached grandchild runs the helper, bounded in time; the prolog returns at once. */
int ctx_slurmd_job_prolog(spank_t sp, int ac, char **av)
{
    uint32_t jobid = 0, uid = 0, gid = 0;
    char err[1024];
    struct helper_config cfg;
    const char *pin = getenv("SPANK_" PREFETCH_ENV), *node = getenv("SLURMD_NODENAME");
    if (!pin || !node || helper_config_parse(&cfg, ac, av, err, sizeof(err)) ||
        spank_get_item(sp, S_JOB_ID, &jobid) != ESPANK_SUCCESS || spank_get_item(sp, S_JOB_UID, &uid) ||
        spank_get_item(sp, S_JOB_GID, &gid))
        return 0;
    json_t *input = json_pack("{s:I, s:I, s:I, s:s, s:s}", "jobid", (json_int_t)jobid, "uid", (json_int_t)uid,
                              "gid", (json_int_t)gid, "node", node, "pin", pin);
    pid_t child = input ? fork() : -1;
    if (child == 0) {
        setsid();
        if (fork() == 0) {
            json_t *out = NULL;
            if (helper_run(&cfg, "hpcctl.plugin.prefetch", input, 1, PREFETCH_SECONDS, -1, &out, err, sizeof(err)))
                slurm_error("hpcctl: job %u prefetch on %s: %s", jobid, node, err);
            json_decref(out);
        }
        _exit(0);
    }
    if (child > 0)
        waitpid(child, NULL, 0);
    json_decref(input);
    return 0;
}
