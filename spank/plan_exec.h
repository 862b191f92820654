/*
 * Execute a MountPlan (hpcctl/container/plan.py): a private mount namespace whose root is the image's squashfs
 * (read-only, nosuid, nodev) under an overlay, with the plan's binds and tmpfs mounts, entered by pivot_root.
 * Used by the SPANK plugin (once per step and node, in a holder process the tasks join with setns) and by the
 * standalone `hpcctl-exec` (`hpcctl run`).
 */
#ifndef HPCCTL_PLAN_EXEC_H
#define HPCCTL_PLAN_EXEC_H

#include <jansson.h>
#include <stddef.h>
#include <sys/types.h>

struct plan_mount {
    const char *source, *target, *kind, *create, *options;
    int readonly, as_user, late;
    int noexec, recursive; /* flags "noexec" and "bind" (not recursive) */
    unsigned long propagation; /* MS_PRIVATE (default), MS_SLAVE, MS_SHARED or MS_UNBINDABLE */
};

struct plan_env {
    const char *op, *name, *value;
};

struct plan {
    json_t *json; /* owns every string below */
    const char *image, *upper, *staging, *workdir, *cwd, *ldconfig_bin;
    struct plan_mount *mounts;
    size_t nmounts;
    struct plan_env *env;
    size_t nenv;
    const char **entrypoint; /* NULL-terminated; empty when the entrypoint is not run */
    const char **notes;      /* NULL-terminated lines shown to the user */
    const char **ldconfig_dirs; /* NULL-terminated directories the linker cache covers besides ldconfig's own */
    int writable, ldconfig, image_user_file;
    int owner_idmap; /* the image's root-owned files appear owned by uid/gid (an id-mapped lower layer) */
    int image_as_owner; /* open the image with image_uid/image_gid's rights (the shared store's owner), not root's */
    uid_t image_uid;
    gid_t image_gid;
    unsigned long long image_offset, image_size; /* the squashfs's bytes in the image file (a .sif's partition);
                                                    image_size 0: to the end */
    int unshare;     /* CLONE_NEWNET | CLONE_NEWIPC | CLONE_NEWUTS: namespaces of the step's own */
    uid_t uid;
    gid_t gid;
    gid_t *groups;
    size_t ngroups;
};

/* Build from {"plan": MountPlan.to_dict(), "uid":, "gid":, "groups": [...], "cwd":}; takes a reference. */
int plan_from_json(json_t *doc, struct plan *p, char *err, size_t errlen);
void plan_free(struct plan *p);

/*
 * In the calling (single-threaded, root) process: new mount namespace, image + overlay + mounts, pivot_root.
 * *cwd_missing is set when plan->cwd did not exist in the container (it is then created, empty, in the overlay).
 */
int plan_enter(const struct plan *p, int *cwd_missing, char *err, size_t errlen);

/* Apply the plan's environment operations through get/set/unset callbacks (the task's env or environ); get
 * returns a malloc'd copy of the value (NULL when unset), so values of any length work. */
struct env_ops {
    char *(*get)(void *ctx, const char *name);
    int (*set)(void *ctx, const char *name, const char *value);
    int (*unset)(void *ctx, const char *name);
    void *ctx;
};
int plan_apply_env(const struct plan *p, const struct env_ops *ops);

/* Join the namespaces (PLAN_NAMESPACES) of process PID (one already checked to be the step's holder). */
#define PLAN_NAMESPACES (CLONE_NEWNET | CLONE_NEWIPC | CLONE_NEWUTS)
int plan_join_namespaces(int pid, char *err, size_t errlen);
/* Refuse, in one line, a REQUIRED namespace (CLONE_NEW* flags) that process PID shares with the caller (a container
 * made without --container-unshare). */
int plan_require_separate(int pid, int required, char *err, size_t errlen);

/* Map the calling user to root in a new user namespace (--container-remap-root). */
int plan_remap_root(uid_t uid, gid_t gid, char *err, size_t errlen);

#endif
