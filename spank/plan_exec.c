/* The syscalls of a MountPlan. Decisions (what to mount, what users may mount) were made by the Python core. */
#define _GNU_SOURCE
#include "plan_exec.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <linux/loop.h>
#include <linux/openat2.h>
#include <net/if.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/fsuid.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
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

/* Whether VALUE is one of the NULL-terminated names that follow. */
static int one_of_list(const char *value, ...)
{
    va_list ap;
    va_start(ap, value);
    int found = 0;
    for (const char *name = va_arg(ap, const char *); name && !found; name = va_arg(ap, const char *))
        found = strcmp(value, name) == 0;
    va_end(ap);
    return found;
}
#define one_of(value, ...) one_of_list((value), __VA_ARGS__, (const char *)NULL)

/* The flags a plan mount carries beyond the defaults (see hpcctl/container/site_mounts.py). */
static int mount_flags(struct plan_mount *m, json_t *flags, char *err, size_t errlen)
{
    static const struct {
        const char *name;
        unsigned long propagation;
    } propagations[] = {{"private", MS_PRIVATE}, {"rprivate", MS_PRIVATE}, {"slave", MS_SLAVE},
                        {"rslave", MS_SLAVE}, {"shared", MS_SHARED}, {"rshared", MS_SHARED},
                        {"unbindable", MS_UNBINDABLE}, {"runbindable", MS_UNBINDABLE}};
    size_t i;
    json_t *flag;
    json_array_foreach(flags, i, flag) {
        const char *name = json_string_value(flag);
        size_t known = 0, n = sizeof(propagations) / sizeof(propagations[0]);
        if (!name)
            FAIL("mount %s: a flag is not a string", m->target);
        if (strcmp(name, "noexec") == 0)
            m->noexec = 1, known = 1;
        else if (strcmp(name, "bind") == 0)
            m->recursive = 0, known = 1;
        for (size_t j = 0; j < n && !known; j++)
            if (strcmp(name, propagations[j].name) == 0)
                m->propagation = propagations[j].propagation, known = 1;
        if (!known)
            FAIL("mount %s: unknown flag '%s'", m->target, name);
    }
    return 0;
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
    p->image_user_file = json_is_true(json_object_get(plan, "image_user_file"));
    p->owner_idmap = json_is_true(json_object_get(plan, "owner_idmap"));
    json_t *open_as = json_object_get(plan, "image_open_as");
    if (json_is_object(open_as)) {
        json_t *ouid = json_object_get(open_as, "uid"), *ogid = json_object_get(open_as, "gid");
        if (!json_is_integer(ouid) || !json_is_integer(ogid) || json_integer_value(ouid) <= 0 ||
            json_integer_value(ogid) < 0)
            FAIL("the mount plan's image_open_as needs a uid > 0 and a gid >= 0");
        p->image_as_owner = 1;
        p->image_uid = (uid_t)json_integer_value(ouid);
        p->image_gid = (gid_t)json_integer_value(ogid);
    }
    json_t *offset = json_object_get(plan, "image_offset"), *size = json_object_get(plan, "image_size");
    if ((offset && (!json_is_integer(offset) || json_integer_value(offset) < 0)) ||
        (size && (!json_is_integer(size) || json_integer_value(size) < 0)))
        FAIL("the mount plan's image_offset and image_size must be integers >= 0");
    p->image_offset = (unsigned long long)json_integer_value(offset);
    p->image_size = (unsigned long long)json_integer_value(size);
    p->cwd = str(doc, "cwd", "");
    p->uid = (uid_t)json_integer_value(json_object_get(doc, "uid"));
    p->gid = (gid_t)json_integer_value(json_object_get(doc, "gid"));
    json_t *groups = json_object_get(doc, "groups");
    p->ngroups = json_array_size(groups);
    p->groups = calloc(p->ngroups + 1, sizeof(gid_t));
    for (size_t i = 0; p->groups && i < p->ngroups; i++)
        p->groups[i] = (gid_t)json_integer_value(json_array_get(groups, i));

    json_t *mounts = json_object_get(plan, "mounts"), *env = json_object_get(plan, "env");
    if ((mounts && !json_is_array(mounts)) || (env && !json_is_array(env)))
        FAIL("the mount plan's mounts and env must be lists (see hpcctl/container/container.schema.json)");
    p->nmounts = json_array_size(mounts);
    p->mounts = calloc(p->nmounts + 1, sizeof(*p->mounts));
    for (size_t i = 0; p->mounts && i < p->nmounts; i++) {
        json_t *m = json_array_get(mounts, i);
        p->mounts[i] = (struct plan_mount){
            .source = str(m, "source", ""), .target = str(m, "target", ""), .kind = str(m, "kind", "bind"),
            .create = str(m, "create", "auto"), .readonly = json_is_true(json_object_get(m, "readonly")),
            .as_user = json_is_true(json_object_get(m, "as_user")), .options = str(m, "options", ""),
            .late = json_is_true(json_object_get(m, "late")), .recursive = 1, .propagation = MS_PRIVATE,
        };
        if (mount_flags(&p->mounts[i], json_object_get(m, "flags"), err, errlen))
            return -1;
        if (p->mounts[i].target[0] != '/')
            FAIL("mount target '%s' is not an absolute path", p->mounts[i].target);
        if (!one_of(p->mounts[i].kind, "bind", "dev", "tmpfs", "symlink", "umount") ||
            !one_of(p->mounts[i].create, "auto", "dir", "file"))
            FAIL("mount %s: unknown kind '%s' or create '%s'", p->mounts[i].target, p->mounts[i].kind,
                 p->mounts[i].create);
    }
    p->nenv = json_array_size(env);
    p->env = calloc(p->nenv + 1, sizeof(*p->env));
    for (size_t i = 0; p->env && i < p->nenv; i++) {
        json_t *e = json_array_get(env, i);
        p->env[i] = (struct plan_env){str(e, "op", "set"), str(e, "name", ""), str(e, "value", "")};
        if (!one_of(p->env[i].op, "set", "prepend", "append", "unset") || !p->env[i].name[0])
            FAIL("environment operation %zu: unknown op '%s' or no name", i, p->env[i].op);
    }
    p->entrypoint = str_list(json_object_get(plan, "entrypoint"));
    p->notes = str_list(json_object_get(plan, "notes"));
    p->ldconfig_dirs = str_list(json_object_get(plan, "ldconfig_dirs"));
    size_t k;
    json_t *ns;
    json_array_foreach(json_object_get(plan, "unshare"), k, ns) {
        const char *name = json_string_value(ns);
        int flag = !name ? 0 : !strcmp(name, "net") ? CLONE_NEWNET : !strcmp(name, "ipc") ? CLONE_NEWIPC
                 : !strcmp(name, "uts") ? CLONE_NEWUTS : 0;
        if (!flag)
            FAIL("unknown namespace '%s' to unshare", name ? name : "?");
        p->unshare |= flag;
    }
    if (!p->groups || !p->mounts || !p->env || !p->entrypoint || !p->notes || !p->ldconfig_dirs)
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
    free(p->ldconfig_dirs);
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

/* REPLACE_LINK: a dangling link of the image's where a file must be (Ubuntu's /etc/resolv.conf) is removed first;
 * only while root works in the container's own overlay, never inside a user's bind. */
static int make_target(const char *target, int want_dir, int replace_link)
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
    /* non-blocking: a FIFO raced in after the stat (inside a user's bind) fails instead of holding root */
    int fd = open(target, O_WRONLY | O_CREAT | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK, 0644);
    if (fd < 0 && errno == ELOOP && replace_link && unlink(target) == 0)
        fd = open(target, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK, 0644);
    if (fd < 0)
        return -1;
    close(fd);
    return 0;
}

/* Look paths up with the user's file-system ids (and groups) until user_fs_end: root opens nothing for the user
 * that the user could not open. */
static int user_fs_begin(const struct plan *p)
{
    if (setgroups(p->ngroups, p->groups))
        return -1;
    setfsgid(p->gid);
    setfsuid(p->uid);
    return 0;
}

static void user_fs_end(void)
{
    int saved = errno;
    setfsuid(0);
    setfsgid(0);
    setgroups(0, NULL);
    errno = saved;
}

/* Attach the squashfs file open at IMG (the plan's bytes of it) to a free loop device, read-only, detached again
 * when unmounted. */
static int loop_attach(const struct plan *p, int img, char *dev, size_t devlen, char *err, size_t errlen)
{
    int ctl = open("/dev/loop-control", O_RDWR | O_CLOEXEC);
    if (ctl < 0)
        FAIL("cannot open /dev/loop-control: %s (load the loop module on this node)", strerror(errno));
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
        cfg.info.lo_offset = p->image_offset;
        cfg.info.lo_sizelimit = p->image_size;
        if (ioctl(lfd, LOOP_CONFIGURE, &cfg) == 0) {
            close(ctl);
            return lfd; /* keep open until mounted: autoclear then ties the device to the mount */
        }
        close(lfd);
        if (errno != EBUSY)
            break;
    }
    int saved = errno;
    close(ctl);
    FAIL("no free loop device for %s: %s", p->image, strerror(saved));
}

/* The image, opened with the user's rights when the user named it: a path swapped for a link after the core's
 * check then gives the user nothing they could not read themselves; a shared store's image with its owner's. */
static int open_image(const struct plan *p, char *err, size_t errlen)
{
    if (p->image_user_file && user_fs_begin(p))
        FAIL("cannot take the user's groups: %s", strerror(errno));
    if (p->image_as_owner) { /* the shared store's file: its owner's rights (root may be squashed there) */
        if (setgroups(0, NULL))
            FAIL("cannot drop root's groups: %s", strerror(errno));
        setfsgid(p->image_gid);
        setfsuid(p->image_uid);
    }
    int fd = open(p->image, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    int saved = errno;
    if (p->image_user_file || p->image_as_owner)
        user_fs_end();
    if (fd < 0)
        FAIL("cannot open image %s: %s", p->image, strerror(saved));
    struct stat st;
    if (fstat(fd, &st) || !(S_ISREG(st.st_mode) || S_ISDIR(st.st_mode))) {
        close(fd);
        FAIL("image %s is neither a squashfs file nor a directory", p->image);
    }
    return fd;
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

/* A user namespace mapping id 0 to the job's user and group (and nothing else), for an id-mapped view of the
 * image: the fd of a short-lived child's namespace, which outlives the child. */
static int owner_userns(uid_t uid, gid_t gid)
{
    int sync[2], fd = -1;
    if (pipe2(sync, O_CLOEXEC))
        return -1;
    pid_t pid = fork();
    if (pid == 0) {
        char c = unshare(CLONE_NEWUSER) ? 'x' : 'o';
        if (write(sync[1], &c, 1) == 1 && c == 'o')
            pause();
        _exit(0);
    }
    close(sync[1]);
    char c = 0, path[64], map[64];
    if (pid > 0 && read(sync[0], &c, 1) == 1 && c == 'o') {
        snprintf(map, sizeof(map), "0 %u 1\n", (unsigned)uid);
        snprintf(path, sizeof(path), "/proc/%d/uid_map", (int)pid);
        int ok = write_file(path, map) == 0;
        snprintf(map, sizeof(map), "0 %u 1\n", (unsigned)gid);
        snprintf(path, sizeof(path), "/proc/%d/gid_map", (int)pid);
        ok = ok && write_file(path, map) == 0;
        snprintf(path, sizeof(path), "/proc/%d/ns/user", (int)pid);
        fd = ok ? open(path, O_RDONLY | O_CLOEXEC) : -1;
    }
    close(sync[0]);
    if (pid > 0) {
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
    }
    return fd;
}

/* Replace the mount at PATH by a view of it in which files owned by root belong to the job's user (the image's
 * files become the user's, as in enroot; nothing on disk changes). */
static int idmap_to_owner(const struct plan *p, const char *path, char *err, size_t errlen)
{
    int ns = owner_userns(p->uid, p->gid);
    if (ns < 0)
        FAIL("cannot create the user namespace for the container's owner: %s", strerror(errno));
    int tree = open_tree(AT_FDCWD, path, OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC);
    struct mount_attr attr = {.attr_set = MOUNT_ATTR_IDMAP, .userns_fd = (unsigned)ns};
    int rc = tree < 0 || mount_setattr(tree, "", AT_EMPTY_PATH, &attr, sizeof(attr)) ||
             umount2(path, MNT_DETACH) || move_mount(tree, "", AT_FDCWD, path, MOVE_MOUNT_F_EMPTY_PATH);
    int saved = errno;
    close(ns);
    if (tree >= 0)
        close(tree);
    if (rc)
        FAIL("cannot give the image's files to the job's user (id-mapped mount): %s", strerror(saved));
    return 0;
}

/* *is_dir: the image is a root directory (an admin's, through hpcctl run), never id-mapped: a directory of the
 * host's would show root's files as the user's. */
static int mount_image(const struct plan *p, const char *lower, int *is_dir, char *err, size_t errlen)
{
    struct stat st;
    int img = open_image(p, err, errlen);
    if (img < 0)
        return -1;
    if (fstat(img, &st)) {
        close(img);
        FAIL("cannot stat image %s: %s", p->image, strerror(errno));
    }
    *is_dir = S_ISDIR(st.st_mode);
    if (*is_dir && p->image_user_file) {
        close(img);
        FAIL("image %s is a directory: pass a squashfs file", p->image);
    }
    if (S_ISDIR(st.st_mode)) {
        int tree = open_tree(img, "", OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | AT_RECURSIVE | AT_EMPTY_PATH);
        struct mount_attr attr = {.attr_set = MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV};
        int rc = tree < 0 || mount_setattr(tree, "", AT_EMPTY_PATH | AT_RECURSIVE, &attr, sizeof(attr)) ||
                 move_mount(tree, "", AT_FDCWD, lower, MOVE_MOUNT_F_EMPTY_PATH);
        int saved = errno;
        if (tree >= 0)
            close(tree);
        close(img);
        if (rc)
            FAIL("cannot bind image directory %s: %s", p->image, strerror(saved));
        return 0;
    }
    char dev[64];
    int lfd = loop_attach(p, img, dev, sizeof(dev), err, errlen);
    close(img);
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
        if (user_fs_begin(p))
            FAIL("cannot take the user's groups: %s", strerror(errno));
        /* the core resolved symlinks when it checked the site's deny list: refuse any that appeared since */
        struct open_how how = {.flags = O_PATH | O_CLOEXEC, .resolve = RESOLVE_NO_SYMLINKS};
        pathfd = (int)syscall(SYS_openat2, AT_FDCWD, m->source, &how, sizeof(how));
        int saved = errno;
        int readable = pathfd >= 0 && faccessat(AT_FDCWD, m->source, R_OK, AT_EACCESS) == 0;
        user_fs_end();
        if (pathfd < 0 || !readable) {
            if (pathfd >= 0)
                close(pathfd);
            FAIL("cannot mount %s: %s (mount only paths you can read)", m->source,
                 strerror(pathfd < 0 ? saved : EACCES));
        }
    }
    unsigned clone = OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | (m->recursive ? AT_RECURSIVE : 0);
    int tree = pathfd >= 0 ? open_tree(pathfd, "", clone | AT_EMPTY_PATH) : open_tree(AT_FDCWD, m->source, clone);
    int saved = errno;
    if (pathfd >= 0)
        close(pathfd);
    if (tree < 0)
        FAIL("cannot mount %s: %s", m->source, strerror(saved));
    struct mount_attr attr = {.attr_set = MOUNT_ATTR_NOSUID, .propagation = m->propagation};
    if (!is_kind(m, "dev"))
        attr.attr_set |= MOUNT_ATTR_NODEV;
    if (m->readonly)
        attr.attr_set |= MOUNT_ATTR_RDONLY;
    if (m->noexec)
        attr.attr_set |= MOUNT_ATTR_NOEXEC;
    if (mount_setattr(tree, "", AT_EMPTY_PATH | AT_RECURSIVE, &attr, sizeof(attr))) {
        saved = errno;
        close(tree);
        FAIL("cannot restrict mount %s: %s", m->source, strerror(saved));
    }
    return tree;
}

#define LDCONFIG_SECONDS 30
#define LDCACHE_MAX_BYTES (64L << 20)

/* The container's /etc, resolved inside its root and never across a mount or through /proc's links; made when the
 * image has none. Opened before any host path is bound in, so it is a directory of the container's overlay. */
static int open_container_etc(char *err, size_t errlen)
{
    struct open_how how = {.flags = O_PATH | O_DIRECTORY | O_CLOEXEC,
                           .resolve = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS | RESOLVE_NO_XDEV};
    int root = open("/", O_PATH | O_DIRECTORY | O_CLOEXEC);
    int fd = (int)syscall(SYS_openat2, root, "etc", &how, sizeof(how));
    if (fd < 0 && errno == ENOENT && mkdirat(root, "etc", 0755) == 0)
        fd = (int)syscall(SYS_openat2, root, "etc", &how, sizeof(how));
    int saved = errno;
    close(root);
    if (fd < 0)
        FAIL("the image's /etc is not a directory of the image (%s): cannot build its linker cache (use an image "
             "whose /etc is a directory, or --container-mpi=none without GPUs)", strerror(saved));
    return fd;
}

/* A directory on the private staging tmpfs that only the job's user can write: where ldconfig puts the cache. */
static int open_ldcache_dir(const struct plan *p, char *err, size_t errlen)
{
    char path[4096];
    snprintf(path, sizeof(path), "%s/ldcache", p->staging);
    if (mkdir(path, 0700) || chown(path, p->uid, p->gid))
        FAIL("cannot prepare the linker cache directory: %s", strerror(errno));
    int fd = open(path, O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        FAIL("cannot open the linker cache directory: %s", strerror(errno));
    return fd;
}

static void ldconfig_child(const struct plan *p, int binary, int workdir)
{
    size_t n = 0;
    while (p->ldconfig_dirs[n])
        n++;
    const char **argv = calloc(n + 8, sizeof(char *));
    char *envp[] = {"PATH=/usr/sbin:/usr/bin:/sbin:/bin", NULL};
    struct rlimit mem = {1L << 30, 1L << 30}, cpu = {LDCONFIG_SECONDS, LDCONFIG_SECONDS},
                  size = {LDCACHE_MAX_BYTES, LDCACHE_MAX_BYTES}, core = {0, 0};
    int null = open("/dev/null", O_RDWR | O_CLOEXEC);
    if (!argv || null < 0 || dup2(null, 0) < 0 || dup2(null, 1) < 0 || dup2(null, 2) < 0 || fchdir(workdir) ||
        setrlimit(RLIMIT_AS, &mem) || setrlimit(RLIMIT_CPU, &cpu) || setrlimit(RLIMIT_FSIZE, &size) ||
        setrlimit(RLIMIT_CORE, &core) || setgroups(p->ngroups, p->groups) || setresgid(p->gid, p->gid, p->gid) ||
        setresuid(p->uid, p->uid, p->uid) || prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) ||
        prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0))
        _exit(126);
    /* no links (-X), none of the image's ld.so.conf (-f /dev/null: its directories come from the plan, read by the
     * core as the user); the cache goes to the working directory, the user's own */
    const char *fixed[] = {"ldconfig", "-X", "-f", "/dev/null", "-C", "ld.so.cache"};
    memcpy(argv, fixed, sizeof(fixed));
    memcpy(argv + 6, p->ldconfig_dirs, n * sizeof(char *));
    syscall(SYS_execveat, binary, "", argv, envp, AT_EMPTY_PATH);
    _exit(127);
}

/* Build the container's linker cache as the job's user, bounded in time and memory, then copy it over the
 * container's /etc/ld.so.cache (ETC: the image's /etc in the overlay). */
static int build_ldcache(const struct plan *p, int binary, int workdir, int etc, char *err, size_t errlen)
{
    pid_t pid = fork();
    if (pid < 0)
        FAIL("cannot fork ldconfig: %s", strerror(errno));
    if (pid == 0)
        ldconfig_child(p, binary, workdir);
    int status = 0;
    struct timespec tick = {0, 5 * 1000 * 1000};
    for (long waited_ms = 0; waitpid(pid, &status, WNOHANG) == 0; waited_ms += 5) {
        if (waited_ms > LDCONFIG_SECONDS * 1000L) {
            kill(pid, SIGKILL);
            waitpid(pid, &status, 0);
            FAIL("building the container's linker cache took longer than %d s and was stopped (check the image's "
                 "library directories for FIFOs or devices)", LDCONFIG_SECONDS);
        }
        nanosleep(&tick, NULL);
    }
    if (!WIFEXITED(status) || WEXITSTATUS(status))
        FAIL("ldconfig failed in the container (status %d)", status);
    int src = openat(workdir, "ld.so.cache", O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
    if (src < 0 && errno == ENOENT)
        return 0; /* an ldconfig that keeps no cache */
    struct stat st;
    if (src < 0 || fstat(src, &st) || !S_ISREG(st.st_mode) || st.st_size > LDCACHE_MAX_BYTES) {
        if (src >= 0)
            close(src);
        FAIL("ldconfig left no usable linker cache");
    }
    /* the image's own ld.so.cache may be a link, a FIFO or a device: replaced by a new file, never opened */
    struct stat old;
    if (fstatat(etc, "ld.so.cache", &old, AT_SYMLINK_NOFOLLOW) == 0 && !S_ISREG(old.st_mode))
        unlinkat(etc, "ld.so.cache", 0);
    int dst = openat(etc, "ld.so.cache", O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC, 0644);
    int rc = dst < 0 ? -1 : 0;
    char buf[65536];
    for (ssize_t got; rc == 0 && (got = read(src, buf, sizeof(buf))) != 0;)
        rc = got < 0 || write(dst, buf, (size_t)got) != got ? -1 : 0;
    int saved = errno;
    close(src);
    if (dst >= 0)
        close(dst);
    if (rc)
        FAIL("cannot write the container's /etc/ld.so.cache: %s", strerror(saved));
    return 0;
}

/* Whether PATH lies inside the target of one of the first N mounts that bind a host path. */
static int path_under_bind(const struct plan *p, size_t n, const char *path)
{
    for (size_t j = 0; j < n; j++) {
        const struct plan_mount *m = &p->mounts[j];
        size_t len = strlen(m->target);
        if ((is_kind(m, "bind") || is_kind(m, "dev")) && len > 1 && strncmp(path, m->target, len) == 0 &&
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
    unsigned long flags = MS_NOSUID | MS_NODEV | (m->noexec ? MS_NOEXEC : 0);
    return mount("tmpfs", m->target, "tmpfs", flags, m->options[0] ? m->options : "mode=1777") ||
           (m->propagation != MS_PRIVATE && mount(NULL, m->target, NULL, m->propagation, NULL));
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
    if (user_fs_begin(p))
        return -1;
    int rc = make_target(target, dir, 0);
    user_fs_end();
    return rc;
}

/* The new network namespace's loopback, up (as in pyxis: 127.0.0.1 answers, nothing else is reachable). */
static int loopback_up(void)
{
    struct ifreq ifr = {0};
    int sock = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "lo");
    int rc = sock < 0 || ioctl(sock, SIOCGIFFLAGS, &ifr) ? -1 : 0;
    ifr.ifr_flags |= IFF_UP | IFF_RUNNING;
    rc = rc || ioctl(sock, SIOCSIFFLAGS, &ifr) ? -1 : 0;
    int saved = errno;
    if (sock >= 0)
        close(sock);
    errno = saved;
    return rc;
}

static const struct {
    const char *name;
    int flag;
} namespace_kinds[] = {{"net", CLONE_NEWNET}, {"ipc", CLONE_NEWIPC}, {"uts", CLONE_NEWUTS}};

int plan_require_separate(int pid, int required, char *err, size_t errlen)
{
    for (size_t i = 0; i < sizeof(namespace_kinds) / sizeof(namespace_kinds[0]); i++) {
        char path[64], own[64];
        struct stat theirs, ours;
        if (!(required & namespace_kinds[i].flag))
            continue;
        snprintf(path, sizeof(path), "/proc/%d/ns/%s", pid, namespace_kinds[i].name);
        snprintf(own, sizeof(own), "/proc/self/ns/%s", namespace_kinds[i].name);
        if (stat(path, &theirs) || stat(own, &ours))
            FAIL("cannot read the container's %s namespace: %s", namespace_kinds[i].name, strerror(errno));
        if (theirs.st_ino == ours.st_ino && theirs.st_dev == ours.st_dev)
            FAIL("the container is not in a separate %s namespace (it was made without --container-unshare=%s)",
                 namespace_kinds[i].name, namespace_kinds[i].name);
    }
    return 0;
}

int plan_join_namespaces(int pid, char *err, size_t errlen)
{
    for (size_t i = 0; i < sizeof(namespace_kinds) / sizeof(namespace_kinds[0]); i++) {
        char path[64], own[64];
        struct stat theirs, ours;
        snprintf(path, sizeof(path), "/proc/%d/ns/%s", pid, namespace_kinds[i].name);
        snprintf(own, sizeof(own), "/proc/self/ns/%s", namespace_kinds[i].name);
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0 || fstat(fd, &theirs) || stat(own, &ours)) {
            if (fd >= 0)
                close(fd);
            FAIL("cannot open the container's %s namespace: %s", namespace_kinds[i].name, strerror(errno));
        }
        int same = theirs.st_ino == ours.st_ino && theirs.st_dev == ours.st_dev;
        int rc = same ? 0 : setns(fd, namespace_kinds[i].flag);
        int saved = errno;
        close(fd);
        if (rc)
            FAIL("cannot join the container's %s namespace: %s", namespace_kinds[i].name, strerror(saved));
    }
    return 0;
}

int plan_enter(const struct plan *p, int *cwd_missing, char *err, size_t errlen)
{
    char lower[4096], upper[4096], work[4096], root[4096], opts[16384];
    int *trees = calloc(p->nmounts + 1, sizeof(int)), ldfd = -1, lddir = -1, etc = -1, rc = -1;
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
    if (p->unshare && (unshare(p->unshare) || ((p->unshare & CLONE_NEWNET) && loopback_up())))
        FAIL("cannot make the step's own namespaces (--container-unshare): %s", strerror(errno));
    /* slave, as runc's default: the host's mount events still reach binds that ask for them (flag "slave"), and
     * nothing mounted here goes back to the host */
    if (mount(NULL, "/", NULL, MS_REC | MS_SLAVE, NULL))
        FAIL("cannot make / a slave mount: %s", strerror(errno));
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
    int image_dir = 0;
    if (mount_image(p, lower, &image_dir, err, errlen) ||
        (p->owner_idmap && !image_dir && idmap_to_owner(p, lower, err, errlen)))
        goto out;
    if (p->owner_idmap && !image_dir && chown(upper, p->uid, p->gid))
        FAIL("cannot give the container's root to the job's user: %s", strerror(errno));
    snprintf(opts, sizeof(opts), "lowerdir=%s,upperdir=%s,workdir=%s,index=off", lower, upper, work);
    if (mount("overlay", root, "overlay", MS_NOSUID | MS_NODEV, opts))
        FAIL("cannot mount the overlay on the image: %s", strerror(errno));
    for (size_t i = 0; i < p->nmounts; i++)
        if (is_kind(&p->mounts[i], "bind") || is_kind(&p->mounts[i], "dev"))
            if ((trees[i] = open_source(p, &p->mounts[i], err, errlen)) < 0)
                goto out;
    if (p->ldconfig && (ldfd = open(p->ldconfig_bin, O_PATH | O_CLOEXEC)) < 0)
        FAIL("cannot open %s: %s", p->ldconfig_bin, strerror(errno));
    if (p->ldconfig && (lddir = open_ldcache_dir(p, err, errlen)) < 0)
        goto out;

    if (chdir(root) || syscall(SYS_pivot_root, ".", ".") || umount2(".", MNT_DETACH) || chdir("/"))
        FAIL("cannot switch to the container's root: %s", strerror(errno));

    /* Mount points first, while only the image and private tmpfs are mounted: root follows paths the image's
     * symlinks control here, and they can lead nowhere but into the container's own overlay or tmpfs. */
    if (p->ldconfig && (etc = open_container_etc(err, errlen)) < 0)
        goto out;
    for (size_t i = 0; i < p->nmounts; i++) {
        const struct plan_mount *m = &p->mounts[i];
        if (under_bind(p, i) || is_kind(m, "umount"))
            continue;
        if (is_kind(m, "symlink")) {
            if (symlink(m->source, m->target) && errno != EEXIST)
                FAIL("cannot create the link %s in the container: %s", m->target, strerror(errno));
        } else if (is_kind(m, "tmpfs")) {
            if (make_target(m->target, 1, 1) || mount_tmpfs(m))
                FAIL("cannot mount a tmpfs on %s: %s", m->target, strerror(errno));
        } else if (make_target(m->target, want_dir(m, trees[i]), 1))
            FAIL("cannot create mount point %s in the container: %s", m->target, strerror(errno));
    }
    if (p->workdir[0] && !path_under_bind(p, p->nmounts, p->workdir) && mkdirs(p->workdir))
        FAIL("cannot create --container-workdir %s: %s", p->workdir, strerror(errno));
    if (p->cwd[0] && !path_under_bind(p, p->nmounts, p->cwd) && access(p->cwd, F_OK)) {
        *cwd_missing = 1; /* made so that slurmstepd's chdir works; the task then goes where the caller says */
        mkdirs(p->cwd);
    }
    /* Then the host's binds, in order, the late ones (/proc, /sys) after the linker cache is built. What must be
     * made inside a bind is made with the user's rights. */
    for (size_t i = 0; i < p->nmounts; i++) {
        const struct plan_mount *m = &p->mounts[i];
        int nested = under_bind(p, i);
        if (is_kind(m, "symlink") || is_kind(m, "umount") || (!nested && is_kind(m, "tmpfs")) || m->late)
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
    if (ldfd >= 0 && build_ldcache(p, ldfd, lddir, etc, err, errlen))
        goto out;
    for (size_t i = 0; i < p->nmounts; i++)
        if (p->mounts[i].late && trees[i] >= 0 &&
            move_mount(trees[i], "", AT_FDCWD, p->mounts[i].target, MOVE_MOUNT_F_EMPTY_PATH))
            FAIL("cannot mount %s on %s: %s", p->mounts[i].source, p->mounts[i].target, strerror(errno));
    /* last, the user's unmounts (pyxis' umount:DST): in the container's own namespace, never a link's target */
    for (size_t i = 0; i < p->nmounts; i++)
        if (is_kind(&p->mounts[i], "umount") && umount2(p->mounts[i].target, MNT_DETACH | UMOUNT_NOFOLLOW))
            FAIL("cannot unmount %s in the container: %s (umount: needs a mount point)", p->mounts[i].target,
                 strerror(errno));
    if (!p->writable && mount(NULL, "/", NULL, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV, NULL))
        FAIL("cannot make the container read-only: %s", strerror(errno));
    rc = 0;
out:
    for (size_t i = 0; i < p->nmounts; i++)
        if (trees[i] >= 0)
            close(trees[i]);
    if (ldfd >= 0)
        close(ldfd);
    if (lddir >= 0)
        close(lddir);
    if (etc >= 0)
        close(etc);
    free(trees);
    return rc;
}

int plan_apply_env(const struct plan *p, const struct env_ops *ops)
{
    for (size_t i = 0; i < p->nenv; i++) {
        const struct plan_env *e = &p->env[i];
        if (strcmp(e->op, "unset") == 0) {
            ops->unset(ops->ctx, e->name);
            continue;
        }
        char *old = NULL, *joined = NULL;
        if (strcmp(e->op, "prepend") == 0 || strcmp(e->op, "append") == 0)
            old = ops->get(ops->ctx, e->name);
        if (old && *old) {
            int prepend = e->op[0] == 'p';
            if (asprintf(&joined, "%s:%s", prepend ? e->value : old, prepend ? old : e->value) < 0)
                joined = NULL;
        }
        int rc = (old && *old && !joined) ? -1 : ops->set(ops->ctx, e->name, joined ? joined : e->value);
        free(old);
        free(joined);
        if (rc)
            return -1;
    }
    return 0;
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
