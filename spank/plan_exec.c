/* The syscalls of a MountPlan. Decisions (what to mount, what users may mount) were made by the Python core. */
#define _GNU_SOURCE
#include "plan_exec.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <linux/loop.h>
#include <linux/openat2.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/fsuid.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#define FAIL(...)                                                                                                 \
    do {                                                                                                          \
        snprintf(err, errlen, __VA_ARGS__);                                                                       \
        return -1;                                                                                                \
    } while (0)

static const char *str(json_t *obj, const char *key, const char *dflt)
{
    const char *s = json_string_value(json_object_get(obj, key));
    return s ? s : dflt;
}

static const char **str_list(json_t *arr)
{
    size_t n = json_is_array(arr) ? json_array_size(arr) : 0;
    const char **out = calloc(n + 1, sizeof(*out));
    for (size_t i = 0; out && i < n; i++)
        out[i] = json_string_value(json_array_get(arr, i));
    return out;
}

int plan_from_json(json_t *doc, struct plan *p, char *err, size_t errlen)
{
    memset(p, 0, sizeof(*p));
    p->json = doc;
    json_t *plan = json_object_get(doc, "plan");
    if (!json_is_object(plan) || !json_is_string(json_object_get(plan, "image")))
        FAIL("the mount plan has no image");
    p->image = str(plan, "image", "");
    p->upper = str(plan, "upper", "");
    p->staging = str(plan, "staging", "/run/hpcctl");
    p->workdir = str(plan, "workdir", "");
    p->ldconfig_bin = str(plan, "ldconfig_bin", "/sbin/ldconfig");
    p->writable = json_is_true(json_object_get(plan, "writable"));
    p->ldconfig = json_is_true(json_object_get(plan, "ldconfig"));
    p->cwd = str(doc, "cwd", "");
    p->uid = (uid_t)json_integer_value(json_object_get(doc, "uid"));
    p->gid = (gid_t)json_integer_value(json_object_get(doc, "gid"));
    json_t *groups = json_object_get(doc, "groups");
    p->ngroups = json_array_size(groups);
    p->groups = calloc(p->ngroups + 1, sizeof(gid_t));
    for (size_t i = 0; p->groups && i < p->ngroups; i++)
        p->groups[i] = (gid_t)json_integer_value(json_array_get(groups, i));

    json_t *mounts = json_object_get(plan, "mounts");
    p->nmounts = json_array_size(mounts);
    p->mounts = calloc(p->nmounts + 1, sizeof(*p->mounts));
    for (size_t i = 0; p->mounts && i < p->nmounts; i++) {
        json_t *m = json_array_get(mounts, i);
        p->mounts[i] = (struct plan_mount){
            .source = str(m, "source", ""), .target = str(m, "target", ""), .kind = str(m, "kind", "bind"),
            .create = str(m, "create", "auto"), .readonly = json_is_true(json_object_get(m, "readonly")),
            .as_user = json_is_true(json_object_get(m, "as_user")), .options = str(m, "options", ""),
        };
        if (p->mounts[i].target[0] != '/')
            FAIL("mount target '%s' is not an absolute path", p->mounts[i].target);
    }
    json_t *env = json_object_get(plan, "env");
    p->nenv = json_array_size(env);
    p->env = calloc(p->nenv + 1, sizeof(*p->env));
    for (size_t i = 0; p->env && i < p->nenv; i++) {
        json_t *e = json_array_get(env, i);
        p->env[i] = (struct plan_env){str(e, "op", "set"), str(e, "name", ""), str(e, "value", "")};
    }
    p->entrypoint = str_list(json_object_get(plan, "entrypoint"));
    p->notes = str_list(json_object_get(plan, "notes"));
    if (!p->groups || !p->mounts || !p->env || !p->entrypoint || !p->notes)
        FAIL("out of memory reading the mount plan");
    return 0;
}

void plan_free(struct plan *p)
{
    free(p->groups);
    free(p->mounts);
    free(p->env);
    free(p->entrypoint);
    free(p->notes);
    json_decref(p->json);
    memset(p, 0, sizeof(*p));
}

/* mkdir -p, relative to the current root; mode 0755 */
static int mkdirs(const char *path)
{
    char buf[4096];
    if (snprintf(buf, sizeof(buf), "%s", path) >= (int)sizeof(buf))
        return -1;
    for (char *s = buf + 1; *s; s++) {
        if (*s != '/')
            continue;
        *s = '\0';
        if (mkdir(buf, 0755) && errno != EEXIST)
            return -1;
        *s = '/';
    }
    return mkdir(buf, 0755) && errno != EEXIST ? -1 : 0;
}

static int make_target(const char *target, int want_dir)
{
    struct stat st;
    if (stat(target, &st) == 0)
        return 0;
    if (want_dir)
        return mkdirs(target);
    char parent[4096];
    snprintf(parent, sizeof(parent), "%s", target);
    char *slash = strrchr(parent, '/');
    if (slash && slash != parent) {
        *slash = '\0';
        if (mkdirs(parent))
            return -1;
    }
    int fd = open(target, O_WRONLY | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0644);
    if (fd < 0)
        return -1;
    close(fd);
    return 0;
}

/* Attach a squashfs file to a free loop device, read-only, detached again when unmounted. */
static int loop_attach(const char *image, char *dev, size_t devlen, char *err, size_t errlen)
{
    int img = open(image, O_RDONLY | O_CLOEXEC);
    if (img < 0)
        FAIL("cannot open image %s: %s", image, strerror(errno));
    int ctl = open("/dev/loop-control", O_RDWR | O_CLOEXEC);
    if (ctl < 0) {
        close(img);
        FAIL("cannot open /dev/loop-control: %s (load the loop module on this node)", strerror(errno));
    }
    for (int attempt = 0; attempt < 20; attempt++) {
        int n = ioctl(ctl, LOOP_CTL_GET_FREE);
        if (n < 0)
            break;
        snprintf(dev, devlen, "/dev/loop%d", n);
        int lfd = open(dev, O_RDONLY | O_CLOEXEC);
        if (lfd < 0)
            continue;
        struct loop_config cfg = {.fd = (unsigned)img};
        cfg.info.lo_flags = LO_FLAGS_READ_ONLY | LO_FLAGS_AUTOCLEAR;
        if (ioctl(lfd, LOOP_CONFIGURE, &cfg) == 0) {
            close(ctl);
            close(img);
            return lfd; /* keep open until mounted: autoclear then ties the device to the mount */
        }
        close(lfd);
        if (errno != EBUSY)
            break;
    }
    int saved = errno;
    close(ctl);
    close(img);
    FAIL("no free loop device for %s: %s", image, strerror(saved));
}

static int mount_image(const struct plan *p, const char *lower, char *err, size_t errlen)
{
    struct stat st;
    if (stat(p->image, &st))
        FAIL("image %s is missing: %s", p->image, strerror(errno));
    if (S_ISDIR(st.st_mode)) {
        if (mount(p->image, lower, NULL, MS_BIND | MS_REC, NULL) ||
            mount(NULL, lower, NULL, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV, NULL))
            FAIL("cannot bind image directory %s: %s", p->image, strerror(errno));
        return 0;
    }
    char dev[64];
    int lfd = loop_attach(p->image, dev, sizeof(dev), err, errlen);
    if (lfd < 0)
        return -1;
    int rc = mount(dev, lower, "squashfs", MS_RDONLY | MS_NOSUID | MS_NODEV, NULL);
    int saved = errno;
    close(lfd);
    if (rc)
        FAIL("cannot mount %s as squashfs: %s (is it a squashfs image?)", p->image, strerror(saved));
    return 0;
}

static int is_kind(const struct plan_mount *m, const char *kind)
{
    return strcmp(m->kind, kind) == 0;
}

/* Open a bind source as a detached mount tree; user sources are looked up with the user's file-system ids. */
static int open_source(const struct plan *p, const struct plan_mount *m, char *err, size_t errlen)
{
    int pathfd = -1;
    if (m->as_user) {
        if (setgroups(p->ngroups, p->groups))
            FAIL("cannot take the user's groups: %s", strerror(errno));
        setfsgid(p->gid);
        setfsuid(p->uid);
        /* the core resolved symlinks when it checked the site's deny list: refuse any that appeared since */
        struct open_how how = {.flags = O_PATH | O_CLOEXEC, .resolve = RESOLVE_NO_SYMLINKS};
        pathfd = (int)syscall(SYS_openat2, AT_FDCWD, m->source, &how, sizeof(how));
        int saved = errno;
        int readable = pathfd >= 0 && faccessat(AT_FDCWD, m->source, R_OK, AT_EACCESS) == 0;
        setfsuid(0);
        setfsgid(0);
        setgroups(0, NULL);
        if (pathfd < 0 || !readable) {
            if (pathfd >= 0)
                close(pathfd);
            FAIL("cannot mount %s: %s (mount only paths you can read)", m->source,
                 strerror(pathfd < 0 ? saved : EACCES));
        }
    }
    int tree = pathfd >= 0
        ? open_tree(pathfd, "", OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | AT_RECURSIVE | AT_EMPTY_PATH)
        : open_tree(AT_FDCWD, m->source, OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | AT_RECURSIVE);
    int saved = errno;
    if (pathfd >= 0)
        close(pathfd);
    if (tree < 0)
        FAIL("cannot mount %s: %s", m->source, strerror(saved));
    struct mount_attr attr = {.attr_set = MOUNT_ATTR_NOSUID, .propagation = MS_PRIVATE};
    if (!is_kind(m, "dev"))
        attr.attr_set |= MOUNT_ATTR_NODEV;
    if (m->readonly)
        attr.attr_set |= MOUNT_ATTR_RDONLY;
    if (mount_setattr(tree, "", AT_EMPTY_PATH | AT_RECURSIVE, &attr, sizeof(attr))) {
        saved = errno;
        close(tree);
        FAIL("cannot restrict mount %s: %s", m->source, strerror(saved));
    }
    return tree;
}

static int run_ldconfig(int fd, char *err, size_t errlen)
{
    pid_t pid = fork();
    if (pid == 0) {
        char *argv[] = {"ldconfig", NULL}, *envp[] = {"PATH=/usr/sbin:/usr/bin:/sbin:/bin", NULL};
        int null = open("/dev/null", O_WRONLY);
        if (null >= 0)
            dup2(null, 1);
        syscall(SYS_execveat, fd, "", argv, envp, AT_EMPTY_PATH);
        _exit(127);
    }
    int status = 0;
    if (pid < 0 || waitpid(pid, &status, 0) < 0 || !WIFEXITED(status) || WEXITSTATUS(status))
        FAIL("ldconfig failed in the container (status %d)", status);
    return 0;
}

/* Whether PATH lies inside the target of one of the first N mounts that bind a host path. */
static int path_under_bind(const struct plan *p, size_t n, const char *path)
{
    for (size_t j = 0; j < n; j++) {
        const struct plan_mount *m = &p->mounts[j];
        size_t len = strlen(m->target);
        if (!is_kind(m, "tmpfs") && !is_kind(m, "symlink") && len > 1 && strncmp(path, m->target, len) == 0 &&
            path[len] == '/')
            return 1;
    }
    return 0;
}

static int under_bind(const struct plan *p, size_t i)
{
    return path_under_bind(p, i, p->mounts[i].target);
}

static int mount_tmpfs(const struct plan_mount *m)
{
    return mount("tmpfs", m->target, "tmpfs", MS_NOSUID | MS_NODEV, m->options[0] ? m->options : "mode=1777");
}

static int want_dir(const struct plan_mount *m, int tree)
{
    struct stat st;
    return strcmp(m->create, "dir") == 0 ||
           (strcmp(m->create, "auto") == 0 && tree >= 0 && fstat(tree, &st) == 0 && S_ISDIR(st.st_mode));
}

/* make_target with the user's file-system identity: inside a host bind, root makes nothing the user could not. */
static int make_target_as_user(const struct plan *p, const char *target, int dir)
{
    if (setgroups(p->ngroups, p->groups))
        return -1;
    setfsgid(p->gid);
    setfsuid(p->uid);
    int rc = make_target(target, dir), saved = errno;
    setfsuid(0);
    setfsgid(0);
    setgroups(0, NULL);
    errno = saved;
    return rc;
}

int plan_enter(const struct plan *p, int *cwd_missing, char *err, size_t errlen)
{
    char lower[4096], upper[4096], work[4096], root[4096], opts[16384];
    int *trees = calloc(p->nmounts + 1, sizeof(int)), ldfd = -1, rc = -1;
    *cwd_missing = 0;
    if (!trees)
        FAIL("out of memory");
    for (size_t i = 0; i < p->nmounts; i++)
        trees[i] = -1;
#undef FAIL
#define FAIL(...)                                                                                                 \
    do {                                                                                                          \
        snprintf(err, errlen, __VA_ARGS__);                                                                       \
        goto out;                                                                                                 \
    } while (0)
    if (unshare(CLONE_NEWNS))
        FAIL("cannot create a mount namespace: %s", strerror(errno));
    if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL))
        FAIL("cannot make / private: %s", strerror(errno));
    if (mkdirs(p->staging) || mount("tmpfs", p->staging, "tmpfs", MS_NOSUID | MS_NODEV, "mode=0700"))
        FAIL("cannot mount a tmpfs on %s: %s", p->staging, strerror(errno));
    snprintf(lower, sizeof(lower), "%s/lower", p->staging);
    snprintf(root, sizeof(root), "%s/root", p->staging);
    if (p->upper[0]) {
        snprintf(upper, sizeof(upper), "%s/upper", p->upper);
        snprintf(work, sizeof(work), "%s/work", p->upper);
    } else {
        snprintf(upper, sizeof(upper), "%s/upper", p->staging);
        snprintf(work, sizeof(work), "%s/work", p->staging);
    }
    if (mkdirs(lower) || mkdirs(root) || mkdirs(upper) || mkdirs(work))
        FAIL("cannot create the container's directories: %s", strerror(errno));
    if (mount_image(p, lower, err, errlen))
        goto out;
    snprintf(opts, sizeof(opts), "lowerdir=%s,upperdir=%s,workdir=%s,index=off", lower, upper, work);
    if (mount("overlay", root, "overlay", MS_NOSUID | MS_NODEV, opts))
        FAIL("cannot mount the overlay on the image: %s", strerror(errno));
    for (size_t i = 0; i < p->nmounts; i++)
        if (!is_kind(&p->mounts[i], "tmpfs") && !is_kind(&p->mounts[i], "symlink") &&
            (trees[i] = open_source(p, &p->mounts[i], err, errlen)) < 0)
            goto out;
    if (p->ldconfig && (ldfd = open(p->ldconfig_bin, O_PATH | O_CLOEXEC)) < 0)
        FAIL("cannot open %s: %s", p->ldconfig_bin, strerror(errno));

    if (chdir(root) || syscall(SYS_pivot_root, ".", ".") || umount2(".", MNT_DETACH) || chdir("/"))
        FAIL("cannot switch to the container's root: %s", strerror(errno));

    /* Mount points first, while only the image and private tmpfs are mounted: root follows paths the image's
     * symlinks control here, and they can lead nowhere but into the container's own overlay or tmpfs. */
    for (size_t i = 0; i < p->nmounts; i++) {
        const struct plan_mount *m = &p->mounts[i];
        if (under_bind(p, i))
            continue;
        if (is_kind(m, "symlink")) {
            if (symlink(m->source, m->target) && errno != EEXIST)
                FAIL("cannot create the link %s in the container: %s", m->target, strerror(errno));
        } else if (is_kind(m, "tmpfs")) {
            if (make_target(m->target, 1) || mount_tmpfs(m))
                FAIL("cannot mount a tmpfs on %s: %s", m->target, strerror(errno));
        } else if (make_target(m->target, want_dir(m, trees[i])))
            FAIL("cannot create mount point %s in the container: %s", m->target, strerror(errno));
    }
    if (p->workdir[0] && !path_under_bind(p, p->nmounts, p->workdir) && mkdirs(p->workdir))
        FAIL("cannot create --container-workdir %s: %s", p->workdir, strerror(errno));
    if (p->cwd[0] && !path_under_bind(p, p->nmounts, p->cwd) && access(p->cwd, F_OK)) {
        *cwd_missing = 1; /* made so that slurmstepd's chdir works; the task then goes where the caller says */
        mkdirs(p->cwd);
    }
    /* Then the host's binds, in order. What must be made inside one of them is made with the user's rights. */
    for (size_t i = 0; i < p->nmounts; i++) {
        const struct plan_mount *m = &p->mounts[i];
        int nested = under_bind(p, i);
        if (is_kind(m, "symlink") || (!nested && is_kind(m, "tmpfs")))
            continue;
        if (nested && make_target_as_user(p, m->target, is_kind(m, "tmpfs") || want_dir(m, trees[i])))
            FAIL("cannot create mount point %s in the container: %s", m->target, strerror(errno));
        if (is_kind(m, "tmpfs")) {
            if (mount_tmpfs(m))
                FAIL("cannot mount a tmpfs on %s: %s", m->target, strerror(errno));
        } else if (move_mount(trees[i], "", AT_FDCWD, m->target, MOVE_MOUNT_F_EMPTY_PATH))
            FAIL("cannot mount %s on %s: %s", m->source, m->target, strerror(errno));
    }
    if (p->workdir[0] && access(p->workdir, F_OK) && make_target_as_user(p, p->workdir, 1))
        FAIL("cannot create --container-workdir %s: %s", p->workdir, strerror(errno));
    if (p->cwd[0] && access(p->cwd, F_OK)) {
        *cwd_missing = 1;
        make_target_as_user(p, p->cwd, 1);
    }
    if (ldfd >= 0 && run_ldconfig(ldfd, err, errlen))
        goto out;
    if (!p->writable && mount(NULL, "/", NULL, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV, NULL))
        FAIL("cannot make the container read-only: %s", strerror(errno));
    rc = 0;
out:
    for (size_t i = 0; i < p->nmounts; i++)
        if (trees[i] >= 0)
            close(trees[i]);
    if (ldfd >= 0)
        close(ldfd);
    free(trees);
    return rc;
}

int plan_apply_env(const struct plan *p, const struct env_ops *ops)
{
    char cur[16384], joined[32768];
    for (size_t i = 0; i < p->nenv; i++) {
        const struct plan_env *e = &p->env[i];
        if (strcmp(e->op, "unset") == 0) {
            ops->unset(ops->ctx, e->name);
            continue;
        }
        const char *value = e->value, *old = NULL;
        if (strcmp(e->op, "prepend") == 0 || strcmp(e->op, "append") == 0)
            old = ops->get(ops->ctx, e->name, cur, sizeof(cur));
        if (old && *old) {
            int prepend = e->op[0] == 'p';
            snprintf(joined, sizeof(joined), "%s:%s", prepend ? e->value : old, prepend ? old : e->value);
            value = joined;
        }
        if (ops->set(ops->ctx, e->name, value))
            return -1;
    }
    return 0;
}

static int write_file(const char *path, const char *text)
{
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    ssize_t n = write(fd, text, strlen(text));
    close(fd);
    return n == (ssize_t)strlen(text) ? 0 : -1;
}

int plan_remap_root(uid_t uid, gid_t gid, char *err, size_t errlen)
{
    char uid_map[64], gid_map[64];
    snprintf(uid_map, sizeof(uid_map), "0 %u 1\n", (unsigned)uid);
    snprintf(gid_map, sizeof(gid_map), "0 %u 1\n", (unsigned)gid);
    /* the task is not dumpable after slurmstepd's setuid: its /proc/self files would stay root's, unwritable */
    if (prctl(PR_SET_DUMPABLE, 1, 0, 0, 0) || unshare(CLONE_NEWUSER) || write_file("/proc/self/uid_map", uid_map) ||
        write_file("/proc/self/setgroups", "deny") || write_file("/proc/self/gid_map", gid_map)) {
        snprintf(err, errlen, "cannot map you to root for --container-remap-root: %s", strerror(errno));
        return -1;
    }
    return 0;
}
