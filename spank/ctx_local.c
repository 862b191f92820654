/* allocator (sbatch, salloc) and local (srun) context: validate the options and pin tag -> digest at submit. */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "contexts.h"
#include "job_pins.h"
#include "opts.h"

/* "<reference> <pinned>" from an enclosing submission (sbatch, or an outer srun) for the same reference */
static const char *inherited_pin(const char *image)
{
    const char *pin = getenv(PINNED_ENV);
    size_t n = image ? strlen(image) : 0;
    if (!pin || !image || strncmp(pin, image, n) != 0 || pin[n] != ' ')
        return NULL;
    return pin + n + 1;
}

static void set_pin(spank_t sp, const char *image, const char *pinned)
{
    char *value = NULL;
    if (asprintf(&value, "%s %s", image, pinned) > 0) {
        setenv(PINNED_ENV, value, 1);
        /* a new allocation's prolog prefetches it on every node (hpcctl.plugin.prefetch); inside a job: no-op */
        spank_job_control_setenv(sp, PREFETCH_ENV, value, 1);
    }
    free(value);
}

/* Only --container-image (and --container-mpi, which the node checks): nothing the helper must validate again */
static int only_image(json_t *options)
{
    size_t n = json_object_size(options);
    return json_object_get(options, "image") && (n == 1 || (n == 2 && json_object_get(options, "mpi")));
}

int ctx_local_post_opt(spank_t sp, const struct helper_config *cfg)
{
    char err[1024], job_pin[4096];
    json_t *out = NULL;
    opts_from_environment(sp);
    json_t *options = opts_to_json();
    if (json_object_size(options) == 0) {
        json_decref(options);
        return 0;
    }
    const char *image = opts_value(OPT_IMAGE);
    /* srun inside a container started by hpcctl: the outer submission validated and pinned already */
    if (getenv("HPCCTL_IN_CONTAINER") && access(cfg->python, X_OK) != 0) {
        json_decref(options);
        return 0;
    }
    /* a later srun of a job for an image an earlier srun of it pinned: the same image, without the helper */
    const char *jobid = spank_context() == S_CTX_LOCAL ? getenv("SLURM_JOB_ID") : NULL;
    const char *pin = inherited_pin(image);
    if (!pin && image && job_pin_find(jobid, image, job_pin, sizeof(job_pin)) == 0)
        pin = job_pin;
    if (pin && only_image(options)) {
        set_pin(sp, image, pin);
        json_decref(options);
        return 0;
    }
    json_t *input = json_pack("{s:s, s:o, s:s?}", "context", spank_context() == S_CTX_LOCAL ? "local" : "allocator",
                              "options", options, "pinned", pin);
    int rc = helper_run(cfg, "hpcctl.plugin.submit", input, 0, 300, -1, &out, err, sizeof(err));
    json_decref(input);
    if (rc) {
        /* one line, then stop: Slurm's own follow-up messages would only repeat it less clearly */
        fprintf(stderr, "%s: error: %s\n", program_invocation_short_name, err);
        exit(1);
    }
    const char *pinned = json_string_value(json_object_get(out, "pinned"));
    if (image && pinned) {
        set_pin(sp, image, pinned);
        if (!pin && strcmp(image, pinned) != 0)
            job_pin_add(jobid, image, pinned);
    }
    json_decref(out);
    return 0;
}
