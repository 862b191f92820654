/* The --container-* options: registration, values from the command line or the environment, JSON for the core. */
#ifndef HPCCTL_OPTS_H
#define HPCCTL_OPTS_H

#include <jansson.h>
#include <slurm/spank.h>

enum hpcctl_opt {
    OPT_IMAGE, OPT_MOUNTS, OPT_WORKDIR, OPT_NAME, OPT_ENV,
    OPT_MOUNT_HOME, OPT_REMAP_ROOT, OPT_ENTRYPOINT, OPT_WRITABLE, OPT_MPI,
    OPT_READONLY, /* only from the environment (pyxis' PYXIS_CONTAINER_READONLY); --container-readonly sets WRITABLE */
    OPT_COUNT
};

/* Register every option; -1 when Slurm refuses one. */
int opts_register(spank_t sp);
/* Fill options not given on the command line from HPCCTL_CONTAINER_* / PYXIS_CONTAINER_* (job env when remote). */
void opts_from_environment(spank_t sp);
/* True when any option asks for a container. */
int opts_container_requested(void);
const char *opts_value(enum hpcctl_opt id);
/* {"image": "...", "mount_home": "1", ...}: only the options that are set, as the user wrote them. */
json_t *opts_to_json(void);

#endif
