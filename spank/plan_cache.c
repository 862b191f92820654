/* The warm path (see plan_cache.h): reuse the core's reply for a later step of the same shape, or keep it. */
#define _GNU_SOURCE
#include "plan_cache.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define ENTRY_MAX (8u << 20) /* as large as a reply may be (the tasks' shared page) */

static uint64_t fnv1a(const char *s)
{
    uint64_t h = 1469598103934665603ULL;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ULL;
    return h;
}

static json_int_t job_int(json_t *input, const char *name)
{
    return json_integer_value(json_object_get(json_object_get(input, "job"), name));
}

/* Whether INODE is one of the N socket inodes in SET. */
static int has_inode(const unsigned long *set, size_t n, unsigned long inode)
{
    for (size_t i = 0; i < n; i++)
        if (set[i] == inode)
            return 1;
    return 0;
}

/*
 * The path of the socket the step's slurmstepd PID listens on, up to the node name's end: SPOOL/NODE_ (with several
 * slurmd on one host it says which node this is, as hpcctl/plugin/node.py reads it); "" when there is none.
 */
static char *stepd_socket_prefix(long pid, long jobid, long stepid)
{
    char path[64], link[64], suffix[64];
    unsigned long *inodes = NULL;
    size_t n = 0, cap = 0;
    snprintf(path, sizeof(path), "/proc/%ld/fd", pid);
    DIR *dir = opendir(path);
    struct dirent *e;
    while (dir && (e = readdir(dir))) {
        ssize_t len = readlinkat(dirfd(dir), e->d_name, link, sizeof(link) - 1);
        unsigned long inode;
        if (len <= 0)
            continue;
        link[len] = '\0';
        if (sscanf(link, "socket:[%lu]", &inode) != 1)
            continue;
        if (n == cap) {
            unsigned long *grown = realloc(inodes, (cap = cap ? cap * 2 : 16) * sizeof(*inodes));
            if (!grown)
                break;
            inodes = grown;
        }
        inodes[n++] = inode;
    }
    if (dir)
        closedir(dir);
    snprintf(suffix, sizeof(suffix), "_%ld.%ld", jobid, stepid);
    char *line = NULL, *found = NULL;
    size_t linecap = 0, slen = strlen(suffix);
    FILE *unix_ = n ? fopen("/proc/net/unix", "re") : NULL;
    while (unix_ && !found && getline(&line, &linecap, unix_) > 0) {
        unsigned long inode;
        int at = 0;
        if (sscanf(line, "%*s %*s %*s %*s %*s %*s %lu %n", &inode, &at) != 1 || !at || !has_inode(inodes, n, inode))
            continue;
        char *sock = line + at;
        sock[strcspn(sock, "\n")] = '\0';
        size_t len = strlen(sock);
        if (len > slen && strcmp(sock + len - slen, suffix) == 0)
            found = strndup(sock, len - slen + 1);
    }
    if (unix_)
        fclose(unix_);
    free(line);
    free(inodes);
    return found ? found : strdup("");
}

/* What names a file's version, as hpcctl/plugin/warm.py records it: [device, inode, size, mtime in ns]; null when
 * it is missing. */
static json_t *file_id(const char *path)
{
    struct stat st;
    if (stat(path, &st))
        return json_null();
    return json_pack("[I,I,I,I]", (json_int_t)st.st_dev, (json_int_t)st.st_ino, (json_int_t)st.st_size,
                     (json_int_t)(st.st_mtim.tv_sec * 1000000000LL + st.st_mtim.tv_nsec));
}

char *plan_cache_key(json_t *input, const char *site, char *const *extra, int nextra)
{
    json_t *job = json_object_get(input, "job");
    json_t *site_id = file_id(site);
    json_t *args = json_array();
    for (int i = 0; i < nextra; i++)
        json_array_append_new(args, json_string(extra[i]));
    char *node = stepd_socket_prefix((long)job_int(input, "stepd_pid"), (long)job_int(input, "jobid"),
                                     (long)job_int(input, "stepid"));
    json_t *pinned = json_object_get(input, "pinned");
    json_t *key = json_pack("{s:O, s:O, s:O, s:O, s:O, s:O, s:O, s:s, s:o, s:o, s:s}", "options",
                            json_object_get(input, "options"), "pinned", pinned ? pinned : json_null(), "uid",
                            json_object_get(job, "uid"), "gid", json_object_get(job, "gid"), "groups",
                            json_object_get(job, "groups"), "cwd", json_object_get(job, "cwd"), "host",
                            json_object_get(job, "host"), "node", node ? node : "", "site", site_id, "plugstack",
                            args, "site_path", site);
    free(node);
    char *text = key ? json_dumps(key, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
    json_decref(key);
    return text;
}

/* Each job variable the core read has the value it had then (null: unset). */
static int env_holds(json_t *recorded, json_t *env)
{
    const char *name;
    json_t *value;
    json_object_foreach(recorded, name, value) {
        json_t *now = json_object_get(env, name);
        if (json_is_null(value) ? now != NULL : !json_is_string(now) || !json_equal(now, value))
            return 0;
    }
    return 1;
}

/* Each device the core tested gives the same access(2) answer in this step's cgroup. */
static int access_holds(json_t *checks)
{
    size_t i;
    json_t *check;
    json_array_foreach(checks, i, check) {
        const char *path = json_string_value(json_array_get(check, 0));
        if (!path || (access(path, R_OK | W_OK) == 0) != json_is_true(json_array_get(check, 1)))
            return 0;
    }
    return 1;
}

/* Each file the reply depends on is the one it was (device, inode, size, mtime), or still missing. */
static int deps_hold(json_t *deps)
{
    size_t i;
    json_t *dep;
    json_array_foreach(deps, i, dep) {
        const char *path = json_string_value(json_array_get(dep, 0));
        json_t *was = json_array_get(dep, 1);
        if (!path)
            return 0;
        json_t *now = file_id(path);
        int same = now && json_equal(now, was);
        json_decref(now);
        if (!same)
            return 0;
    }
    return 1;
}

/* A root-owned directory NAME in DIRFD (made 0700 when missing), opened without following links; -1 on error. */
static int subdir(int dirfd, const char *name)
{
    struct stat st;
    if (mkdirat(dirfd, name, 0700) && errno != EEXIST)
        return -1;
    int fd = openat(dirfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd >= 0 && (fstat(fd, &st) || st.st_uid != 0 || (st.st_mode & 022))) {
        close(fd);
        return -1;
    }
    return fd;
}

/* Write TEXT to NAME in DIRFD whole or not at all (a temporary name, then rename). */
static int write_at(int dirfd, const char *name, const char *text)
{
    char tmp[256];
    snprintf(tmp, sizeof(tmp), ".%s.%d.tmp", name, (int)getpid());
    int fd = openat(dirfd, tmp, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0600);
    size_t len = strlen(text), done = 0;
    while (fd >= 0 && done < len) {
        ssize_t n = write(fd, text + done, len - done);
        if (n <= 0)
            break;
        done += (size_t)n;
    }
    int ok = fd >= 0 && done == len && close(fd) == 0 && renameat(dirfd, tmp, dirfd, name) == 0;
    if (!ok) {
        if (fd >= 0 && done != len)
            close(fd);
        unlinkat(dirfd, tmp, 0);
    }
    return ok ? 0 : -1;
}

/* This step's container record, as hpcctl/plugin/names.py unnamed() makes it: RECORDS/JOB/NODE/UID-JOB.STEP with
 * an "unnamed" mark and the image it runs. Its path (malloc'd), or NULL. */
static char *make_record(json_t *warm, json_t *input)
{
    const char *records = json_string_value(json_object_get(warm, "records"));
    const char *node = json_string_value(json_object_get(warm, "node"));
    const char *image = json_string_value(json_object_get(warm, "image_json"));
    long job = (long)job_int(input, "jobid"), step = (long)job_int(input, "stepid"), uid = (long)job_int(input, "uid");
    char jobname[32], name[96], *path = NULL;
    if (!records || !node || !image || !*node || strchr(node, '/') || node[0] == '.')
        return NULL;
    snprintf(jobname, sizeof(jobname), "%ld", job);
    snprintf(name, sizeof(name), "%ld-%ld.%ld", uid, job, step);
    int top = open(records, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    int jobfd = top >= 0 ? subdir(top, jobname) : -1;
    int nodefd = jobfd >= 0 ? subdir(jobfd, node) : -1;
    int fd = nodefd >= 0 ? subdir(nodefd, name) : -1;
    int mark = fd >= 0 ? openat(fd, "unnamed", O_WRONLY | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600) : -1;
    if (mark >= 0 && close(mark) == 0 && write_at(fd, "image.json", image) == 0 &&
        asprintf(&path, "%s/%s/%s/%s", records, jobname, node, name) < 0)
        path = NULL;
    for (int *d = (int[]){top, jobfd, nodefd, fd}, i = 0; i < 4; i++)
        if (d[i] >= 0)
            close(d[i]);
    return path;
}

/* The entry file's whole text: root's, not writable by others, a regular file, bounded. malloc'd, or NULL. */
static char *read_entry(const char *path)
{
    struct stat st;
    int fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    char *text = NULL;
    if (fd < 0)
        return NULL;
    if (!fstat(fd, &st) && S_ISREG(st.st_mode) && st.st_uid == 0 && !(st.st_mode & 022) &&
        (size_t)st.st_size < ENTRY_MAX && (text = malloc((size_t)st.st_size + 1))) {
        ssize_t n = pread(fd, text, (size_t)st.st_size, 0);
        if (n == st.st_size)
            text[n] = '\0';
        else {
            free(text);
            text = NULL;
        }
    }
    close(fd);
    return text;
}

json_t *plan_cache_lookup(const char *runtime, const char *key, json_t *input)
{
    char *path = NULL, *text = NULL;
    json_t *entry = NULL, *reply = NULL;
    if (asprintf(&path, "%s/plans/%016llx.json", runtime, (unsigned long long)fnv1a(key)) < 0)
        return NULL;
    text = read_entry(path);
    entry = text ? json_loads(text, 0, NULL) : NULL;
    json_t *warm = json_object_get(entry, "warm"), *kept = json_object_get(entry, "reply");
    json_int_t created = json_integer_value(json_object_get(entry, "created"));
    json_int_t ttl = json_integer_value(json_object_get(warm, "ttl_s"));
    time_t now = time(NULL);
    const char *hold = json_string_value(json_object_get(kept, "hold"));
    const char *image = json_string_value(json_object_get(json_object_get(kept, "plan"), "image"));
    const char *kept_key = json_string_value(json_object_get(entry, "key"));
    if (json_is_object(kept) && json_is_object(warm) && kept_key && strcmp(kept_key, key) == 0 &&
        created <= now && now < created + ttl && env_holds(json_object_get(warm, "env"),
                                                         json_object_get(json_object_get(input, "job"), "env")) &&
        access_holds(json_object_get(warm, "access")) && deps_hold(json_object_get(warm, "deps")) && hold && image &&
        access(hold, F_OK) == 0 && access(image, F_OK) == 0) {
        char *record = make_record(warm, input);
        if (record) {
            reply = json_deep_copy(kept);
            json_object_set_new(reply, "named_dir", json_string(record));
            free(record);
        }
    } else if (entry && created + ttl <= now)
        unlink(path); /* expired: the core makes a new one */
    json_decref(entry);
    free(text);
    free(path);
    return reply;
}

void plan_cache_store(const char *key, json_t *reply)
{
    json_t *warm = json_object_get(reply, "warm");
    json_incref(warm);
    json_object_del(reply, "warm");
    const char *dir = json_string_value(json_object_get(warm, "plans"));
    char *parent = dir ? strdup(dir) : NULL, *base = parent ? strrchr(parent, '/') : NULL, name[32];
    snprintf(name, sizeof(name), "%016llx.json", (unsigned long long)fnv1a(key));
    if (base)
        *base++ = '\0';
    int top = json_is_object(warm) && base && *parent && *base
                  ? open(parent, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC) : -1;
    int plans = top >= 0 ? subdir(top, base) : -1;
    json_t *entry = plans >= 0 ? json_pack("{s:s, s:I, s:O, s:O}", "key", key, "created", (json_int_t)time(NULL),
                                           "reply", reply, "warm", warm)
                               : NULL;
    char *text = entry ? json_dumps(entry, JSON_COMPACT) : NULL;
    if (text && strlen(text) < ENTRY_MAX)
        write_at(plans, name, text);
    free(text);
    json_decref(entry);
    json_decref(warm);
    free(parent);
    for (int *d = (int[]){top, plans}, i = 0; i < 2; i++)
        if (d[i] >= 0)
            close(d[i]);
}
