/* job script context (slurmd, as root, after the job): remove the job's named containers on this node. */
#include <stdint.h>
#include <stdio.h>

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
