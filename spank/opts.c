/* The --container-* options, pyxis-compatible. Values are kept as strings; the Python core validates them. */
#include "opts.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* name in JSON and in environment variables (upper-cased), e.g. mount_home -> HPCCTL_CONTAINER_MOUNT_HOME */
static const char *const keys[OPT_COUNT] = {
    "image", "mounts", "workdir", "name", "env", "mount_home", "remap_root", "entrypoint", "writable", "mpi",
    "readonly",
};

static char *values[OPT_COUNT];

/* val encodes the option and, for flags, the value: id * 4 + (0: argument, 1: flag on, 2: flag off) */
static int opt_set(int val, const char *optarg, int remote)
{
    int id = val / 4, kind = val % 4;
    (void)remote;
    if (id < 0 || id >= OPT_COUNT)
        return -1;
    free(values[id]);
    values[id] = strdup(kind == 0 ? (optarg ? optarg : "") : (kind == 1 ? "1" : "0"));
    return values[id] ? 0 : -1;
}

#define ARG(id) ((id) * 4)
#define ON(id) ((id) * 4 + 1)
#define OFF(id) ((id) * 4 + 2)

static struct spank_option options[] = {
    {"container-image", "[USER@][REGISTRY#]IMAGE[:TAG]|PATH",
     "[hpcctl] run the tasks in this container image (registry reference or squashfs file)", 1, ARG(OPT_IMAGE),
     opt_set},
    {"container-mounts", "SRC:DST[:FLAGS][,SRC:DST...]",
     "[hpcctl] bind mount(s) inside the container; FLAGS: ro, rw (joined with +); SRC may be tmpfs", 1,
     ARG(OPT_MOUNTS), opt_set},
    {"container-workdir", "PATH", "[hpcctl] working directory inside the container", 1, ARG(OPT_WORKDIR), opt_set},
    {"container-name", "NAME[:MODE]",
     "[hpcctl] name the container to reuse it in later steps of the job; MODE: auto, create, exec, no_exec", 1,
     ARG(OPT_NAME), opt_set},
    {"container-env", "NAME[,NAME...]",
     "[hpcctl] these host variables override the image's values", 1, ARG(OPT_ENV), opt_set},
    {"container-mount-home", NULL, "[hpcctl] bind the user's home directory into the container", 0,
     ON(OPT_MOUNT_HOME), opt_set},
    {"no-container-mount-home", NULL, "[hpcctl] do not bind the user's home directory", 0, OFF(OPT_MOUNT_HOME),
     opt_set},
    {"container-remap-root", NULL, "[hpcctl] appear as root inside the container (user namespace)", 0,
     ON(OPT_REMAP_ROOT), opt_set},
    {"no-container-remap-root", NULL, "[hpcctl] keep the user's own uid inside the container", 0,
     OFF(OPT_REMAP_ROOT), opt_set},
    {"container-entrypoint", NULL, "[hpcctl] run the image's entrypoint before the command", 0, ON(OPT_ENTRYPOINT),
     opt_set},
    {"no-container-entrypoint", NULL, "[hpcctl] do not run the image's entrypoint", 0, OFF(OPT_ENTRYPOINT),
     opt_set},
    {"container-writable", NULL, "[hpcctl] make the container's root filesystem writable (tmpfs overlay)", 0,
     ON(OPT_WRITABLE), opt_set},
    {"container-readonly", NULL, "[hpcctl] make the container's root filesystem read-only", 0, OFF(OPT_WRITABLE),
     opt_set},
    {"container-mpi", "NAME|none", "[hpcctl] host MPI to inject (a flavour of the site config; default: the site's)",
     1, ARG(OPT_MPI), opt_set},
    SPANK_OPTIONS_TABLE_END
};

int opts_register(spank_t sp)
{
    for (struct spank_option *opt = options; opt->name; opt++)
        if (spank_option_register(sp, opt) != ESPANK_SUCCESS) {
            slurm_error("hpcctl: could not register --%s", opt->name);
            return -1;
        }
    return 0;
}

static const char *lookup(spank_t sp, const char *name, char *buf, size_t len)
{
    if (spank_remote(sp))
        return spank_getenv(sp, name, buf, (int)len) == ESPANK_SUCCESS ? buf : NULL;
    return getenv(name);
}

void opts_from_environment(spank_t sp)
{
    static const char *const prefixes[] = {"HPCCTL_CONTAINER_", "PYXIS_CONTAINER_"};
    char name[64], buf[4096];
    for (int id = 0; id < OPT_COUNT; id++) {
        /* as in pyxis: ..._READONLY counts only when neither the command line nor ..._WRITABLE decided */
        if (values[id] || (id == OPT_READONLY && values[OPT_WRITABLE]))
            continue;
        for (size_t p = 0; p < sizeof(prefixes) / sizeof(*prefixes) && !values[id]; p++) {
            int n = snprintf(name, sizeof(name), "%s%s", prefixes[p], keys[id]);
            for (int i = (int)strlen(prefixes[p]); i < n; i++)
                name[i] = (char)toupper((unsigned char)name[i]);
            const char *v = lookup(sp, name, buf, sizeof(buf));
            if (v && *v)
                values[id] = strdup(v);
        }
    }
}

int opts_container_requested(void)
{
    return values[OPT_IMAGE] != NULL || values[OPT_NAME] != NULL;
}

const char *opts_value(enum hpcctl_opt id)
{
    return values[id];
}

json_t *opts_to_json(void)
{
    json_t *obj = json_object();
    for (int id = 0; id < OPT_COUNT; id++)
        if (values[id])
            json_object_set_new(obj, keys[id], json_string(values[id]));
    return obj;
}
