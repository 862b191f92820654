/* The --container-* options: registration, values from the command line or the environment, JSON for the core. */
#ifndef HPCCTL_OPTS_H
#define HPCCTL_OPTS_H

#include <jansson.h>
#include <slurm/spank.h>

enum hpcctl_opt {
    OPT_IMAGE, OPT_MOUNTS, OPT_WORKDIR, OPT_NAME, OPT_ENV,
    OPT_MOUNT_HOME, OPT_REMAP_ROOT, OPT_ENTRYPOINT, OPT_WRITABLE, OPT_MPI,
    OPT_READONLY, /* only from the environment (pyxis' PYXIS_CONTAINER_READONLY); --container-readonly sets WRITABLE */
    OPT_ENTRYPOINT_LOG, OPT_SAVE, OPT_UNSHARE,
    OPT_COUNT
};

/* Register every option; -1 when Slurm refuses one. */
int opts_register(spank_t sp);
/* Fill options not given on the command line from HPCCTL_CONTAINER_* / PYXIS_CONTAINER_* (job env when remote). */
void opts_from_environment(spank_t sp);
/* True when any option asks for a container. */
int opts_container_requested(void);
const char *opts_value(enum hpcctl_opt id);
/* Whether NAME is one of --container-env's names (LEN: its length, as NAME need not end there). */
int opts_env_listed(const char *name, size_t len);
/* A variable of the job's environment when remote (the process's otherwise), any length; malloc'd, or NULL. */
char *opts_getenv(spank_t sp, const char *name);
/* {"image": "...", "mount_home": "1", ...}: only the options that are set, as the user wrote them; on a node also
 * "env_host" (the --container-env names the job's environment has); "conflict": a flag given both ways. */
json_t *opts_to_json(void);

#endif
