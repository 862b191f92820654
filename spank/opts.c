/* The --container-* options, pyxis-compatible. Values are kept as strings; the Python core validates them. */
#include "opts.h"

#include <ctype.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* name in JSON and in environment variables (upper-cased), e.g. mount_home -> HPCCTL_CONTAINER_MOUNT_HOME */
static const char *const keys[OPT_COUNT] = {
    "image", "mounts", "workdir", "name", "env", "mount_home", "remap_root", "entrypoint", "writable", "mpi",
    "readonly", "entrypoint_log", "save", "unshare",
};

static char *values[OPT_COUNT];
static char *env_host;  /* on a node: the --container-env names the job's environment has, comma-separated */
static int conflict = -1; /* a flag given both ways on the command line (pyxis refuses it) */

/* val encodes the option and, for flags, the value: id * 4 + (0: argument, 1: flag on, 2: flag off) */
static int opt_set(int val, const char *optarg, int remote)
{
    int id = val / 4, kind = val % 4;
    if (id < 0 || id >= OPT_COUNT)
        return -1;
    const char *value = kind == 0 ? (optarg ? optarg : "") : (kind == 1 ? "1" : "0");
    /* on the command line only (reported by the core, in one line with the fix): a step also gets its job's
     * options, which its own override */
    if (!remote && kind != 0 && values[id] && strcmp(values[id], value) != 0 && conflict < 0)
        conflict = id;
    free(values[id]);
    values[id] = strdup(value);
    return values[id] ? 0 : -1;
}

#define ARG(id) ((id) * 4)
#define ON(id) ((id) * 4 + 1)
#define OFF(id) ((id) * 4 + 2)

static struct spank_option options[] = {
    {"container-image", "[USER@][REGISTRY#]IMAGE[:TAG]|PATH",
     "[hpcctl] run the tasks in this container image (registry reference, squashfs or .sif file)", 1, ARG(OPT_IMAGE),
     opt_set},
    {"container-mounts", "SRC:DST[:FLAGS][,SRC:DST...]",
     "[hpcctl] bind mount(s) inside the container; FLAGS: ro, rw (joined with +); SRC may be tmpfs", 1,
     ARG(OPT_MOUNTS), opt_set},
    {"container-workdir", "PATH", "[hpcctl] working directory inside the container (default: the image's WORKDIR)",
     1, ARG(OPT_WORKDIR), opt_set},
    {"container-name", "NAME[:MODE]",
     "[hpcctl] name the container to reuse it in later steps of the job; MODE: auto, create, exec, no_exec", 1,
     ARG(OPT_NAME), opt_set},
    {"container-env", "NAME[,NAME...]",
     "[hpcctl] these host variables override the image's values and reach the entrypoint (the others are set "
     "after it, where the image sets none)", 1, ARG(OPT_ENV), opt_set},
    {"container-mount-home", NULL, "[hpcctl] bind the user's home directory into the container", 0,
     ON(OPT_MOUNT_HOME), opt_set},
    {"no-container-mount-home", NULL, "[hpcctl] do not bind the user's home directory", 0, OFF(OPT_MOUNT_HOME),
     opt_set},
    {"container-remap-root", NULL, "[hpcctl] appear as root inside the container (user namespace)", 0,
     ON(OPT_REMAP_ROOT), opt_set},
    {"no-container-remap-root", NULL, "[hpcctl] keep the user's own uid inside the container", 0,
     OFF(OPT_REMAP_ROOT), opt_set},
    {"container-entrypoint", NULL, "[hpcctl] run the image's entrypoint before the command, once per node", 0,
     ON(OPT_ENTRYPOINT), opt_set},
    {"no-container-entrypoint", NULL, "[hpcctl] do not run the image's entrypoint", 0, OFF(OPT_ENTRYPOINT),
     opt_set},
    {"container-writable", NULL, "[hpcctl] make the container's root filesystem writable (tmpfs overlay)", 0,
     ON(OPT_WRITABLE), opt_set},
    {"container-readonly", NULL, "[hpcctl] make the container's root filesystem read-only", 0, OFF(OPT_WRITABLE),
     opt_set},
    {"container-mpi", "NAME|none", "[hpcctl] host MPI to inject (a flavour of the site config; default: the site's)",
     1, ARG(OPT_MPI), opt_set},
    {"container-entrypoint-log", NULL, "[hpcctl] print the output of the image's entrypoint", 0,
     ON(OPT_ENTRYPOINT_LOG), opt_set},
    {"container-save", "PATH", "[hpcctl] save the container's state as a squashfs file when the step ends", 1,
     ARG(OPT_SAVE), opt_set},
    {"container-unshare", "NS[,NS...]", "[hpcctl] namespaces the step gets of its own: net (a loopback only), ipc, uts",
     1, ARG(OPT_UNSHARE), opt_set},
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

char *opts_getenv(spank_t sp, const char *name)
{
    if (!spank_remote(sp)) {
        const char *value = getenv(name);
        return value ? strdup(value) : NULL;
    }
    for (size_t len = 256; len <= INT_MAX; len *= 2) {
        char *buf = malloc(len);
        spank_err_t rc = buf ? spank_getenv(sp, name, buf, (int)len) : ESPANK_ERROR;
        if (rc == ESPANK_SUCCESS)
            return buf;
        free(buf);
        if (rc != ESPANK_NOSPACE)
            return NULL;
    }
    return NULL;
}

int opts_env_listed(const char *name, size_t len)
{
    for (const char *p = values[OPT_ENV]; p && *p; p = strchr(p, ',') ? strchr(p, ',') + 1 : NULL)
        if (strncmp(p, name, len) == 0 && (p[len] == ',' || p[len] == '\0'))
            return 1;
    return 0;
}

/* The --container-env names the job's environment has: the others keep the image's value (pyxis' environ()). */
static char *names_on_host(spank_t sp, const char *names)
{
    char *out = calloc(1, strlen(names) + 1), probe;
    for (const char *p = names; out && *p; p += strcspn(p, ","), p += *p == ',') {
        size_t len = strcspn(p, ",");
        char *name = strndup(p, len);
        spank_err_t rc = name ? spank_getenv(sp, name, &probe, 1) : ESPANK_ERROR;
        if (rc == ESPANK_SUCCESS || rc == ESPANK_NOSPACE)
            strncat(strcat(out, *out ? "," : ""), p, len);
        free(name);
    }
    return out;
}

void opts_from_environment(spank_t sp)
{
    static const char *const prefixes[] = {"HPCCTL_CONTAINER_", "PYXIS_CONTAINER_"};
    char name[64];
    for (int id = 0; id < OPT_COUNT; id++) {
        /* as in pyxis: ..._READONLY counts only when neither the command line nor ..._WRITABLE decided */
        if (values[id] || (id == OPT_READONLY && values[OPT_WRITABLE]))
            continue;
        for (size_t p = 0; p < sizeof(prefixes) / sizeof(*prefixes) && !values[id]; p++) {
            int n = snprintf(name, sizeof(name), "%s%s", prefixes[p], keys[id]);
            for (int i = (int)strlen(prefixes[p]); i < n; i++)
                name[i] = (char)toupper((unsigned char)name[i]);
            char *v = opts_getenv(sp, name);
            if (v && *v)
                values[id] = v;
            else
                free(v);
        }
    }
    if (spank_remote(sp) && values[OPT_ENV]) {
        free(env_host);
        env_host = names_on_host(sp, values[OPT_ENV]);
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
    if (env_host)
        json_object_set_new(obj, "env_host", json_string(env_host));
    if (conflict >= 0)
        json_object_set_new(obj, "conflict", json_string(keys[conflict]));
    return obj;
}
