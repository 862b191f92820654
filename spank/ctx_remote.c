/*
 * remote context (slurmstepd). user_init: fork a holder that asks the Python core for the MountPlan and builds the
 * container once per step and node, while slurmstepd goes on to launch the tasks. task_init_privileged: each task
 * waits for the holder, joins its mount namespace and sets no_new_privs. task_init (as the user): environment,
 * working directory, remap-root, entrypoint. Errors reach the task's stderr (terminal or job error file) as one
 * line in task_init, and the task exits 1.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "contexts.h"
#include "id_filter.h"
#include "opts.h"
#include "plan_exec.h"

#ifndef SLURM_BATCH_SCRIPT
#define SLURM_BATCH_SCRIPT 0xfffffffb
#endif
#define SLURM_EXTERN_STEP 0xfffffffc
#define SLURM_INTERACTIVE 0xfffffffa

/* Written by the holder, read by every task of the step on this node (mapped before the tasks fork). */
struct shared {
    volatile int state; /* 0: still working, 1: container ready, 2: failed */
    int holder;
    int cwd_missing;
    char error[1024];
    char reply[]; /* the core's JSON reply */
};
#define SHARED_SIZE (8u << 20)

static struct {
    int enabled, have_plan, remap_root;
    char error[1024];
    struct plan plan;
    struct shared *shared;
    int ready_fd; /* EOF once the holder finished (or died) */
    int keep_fd;  /* the holder lives until this, our end of its pipe, closes */
    const char *fallback_dir;
} st = {.ready_fd = -1, .keep_fd = -1};

int ctx_remote_post_opt(spank_t sp)
{
    uint32_t stepid = 0;
    opts_from_environment(sp);
    spank_get_item(sp, S_JOB_STEPID, &stepid);
    st.enabled = opts_container_requested() && stepid != SLURM_EXTERN_STEP && stepid != SLURM_INTERACTIVE;
    return 0;
}

static json_t *job_facts(spank_t sp)
{
    uid_t uid = 0;
    gid_t gid = 0, *gids = NULL;
    uint32_t jobid = 0, stepid = 0, nodeid = 0, ntasks = 0;
    int ngids = 0, argc = 0;
    char **argv = NULL, **env = NULL, host[256] = "";
    spank_get_item(sp, S_JOB_UID, &uid);
    spank_get_item(sp, S_JOB_GID, &gid);
    spank_get_item(sp, S_JOB_ID, &jobid);
    spank_get_item(sp, S_JOB_STEPID, &stepid);
    spank_get_item(sp, S_JOB_NODEID, &nodeid);
    spank_get_item(sp, S_JOB_LOCAL_TASK_COUNT, &ntasks);
    spank_get_item(sp, S_JOB_SUPPLEMENTARY_GIDS, &gids, &ngids);
    spank_get_item(sp, S_JOB_ARGV, &argc, &argv);
    spank_get_item(sp, S_JOB_ENV, &env);
    gethostname(host, sizeof(host) - 1);
    char cwd[4096] = "";
    if (!getcwd(cwd, sizeof(cwd)))
        cwd[0] = '\0';
    json_t *groups = json_array(), *args = json_array(), *environ_ = json_object();
    for (int i = 0; i < ngids; i++)
        json_array_append_new(groups, json_integer(gids[i]));
    for (int i = 0; i < argc; i++)
        json_array_append_new(args, json_string(argv[i]));
    for (int i = 0; env && env[i]; i++) {
        char *eq = strchr(env[i], '=');
        if (eq) {
            char *name = strndup(env[i], (size_t)(eq - env[i]));
            json_t *value = json_string(eq + 1);
            if (name && value)
                json_object_set_new(environ_, name, value);
            else
                json_decref(value);
            free(name);
        }
    }
    /* stepd_pid: this process, the step's slurmstepd, whose socket names the node (hpcctl/plugin/node.py) */
    return json_pack("{s:I, s:I, s:o, s:I, s:I, s:b, s:I, s:I, s:o, s:o, s:s, s:s, s:I}", "uid", (json_int_t)uid,
                     "gid", (json_int_t)gid, "groups", groups, "jobid", (json_int_t)jobid, "stepid",
                     (json_int_t)stepid, "batch", stepid == SLURM_BATCH_SCRIPT, "nodeid", (json_int_t)nodeid,
                     "local_tasks", (json_int_t)ntasks, "argv", args, "env", environ_, "host", host, "cwd", cwd,
                     "stepd_pid", (json_int_t)getpid());
}

/* Field 22 of /proc/<pid>/stat, the process's start time: with the pid, it names one process for good. */
static int start_time(int pid, char *out, size_t outlen)
{
    char path[64], buf[4096];
    snprintf(path, sizeof(path), "/proc/%d/stat", pid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    ssize_t n = fd >= 0 ? read(fd, buf, sizeof(buf) - 1) : -1;
    if (fd >= 0)
        close(fd);
    if (n <= 0)
        return -1;
    buf[n] = '\0';
    char *field = strrchr(buf, ')'), *save = NULL;
    if (!field)
        return -1;
    field = strtok_r(field + 1, " ", &save); /* field 3 */
    for (int i = 3; field && i < 22; i++)
        field = strtok_r(NULL, " ", &save);
    return field ? (snprintf(out, outlen, "%s", field) < (int)outlen ? 0 : -1) : -1;
}

/*
 * Enter the mount namespace of the named container another step of the job runs (--container-name, auto/exec).
 * 1 when that step ended meanwhile (its holder is gone): the caller then makes a new container from the kept state.
 */
static int join_running(json_t *join, const char *cwd, int *cwd_missing, char *err, size_t errlen)
{
    char path[64], now[64];
    int pid = (int)json_integer_value(json_object_get(join, "pid"));
    const char *start = json_string_value(json_object_get(join, "start"));
    snprintf(path, sizeof(path), "/proc/%d/ns/mnt", pid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    /* checked after the open: the fd then belongs to the very process the core found running */
    if (fd < 0 || !start || start_time(pid, now, sizeof(now)) || strcmp(now, start)) {
        if (fd >= 0)
            close(fd);
        return 1;
    }
    int rc = setns(fd, CLONE_NEWNS);
    close(fd);
    if (rc) {
        snprintf(err, errlen, "cannot join the named container: %s", strerror(errno));
        return -1;
    }
    *cwd_missing = cwd[0] && access(cwd, F_OK) != 0;
    return 0;
}

/* Record this holder in the named container's directory (opened before pivot_root), for later steps to join. */
static void record_holder(int dirfd)
{
    char line[96], start[64];
    if (dirfd < 0 || start_time((int)getpid(), start, sizeof(start)))
        return;
    int n = snprintf(line, sizeof(line), "%d %s\n", (int)getpid(), start);
    int fd = openat(dirfd, "holder.tmp", O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd < 0)
        return;
    int ok = write(fd, line, (size_t)n) == n;
    close(fd);
    if (ok)
        renameat(dirfd, "holder.tmp", dirfd, "holder");
}

#define HOLD_WAIT_S 30

/* A shared flock on the image's use file (cache gc then leaves the image), waiting at most HOLD_WAIT_S. */
static int hold_shared(int fd)
{
    struct timespec tick = {0, 50 * 1000 * 1000};
    for (int waited_ms = 0; flock(fd, LOCK_SH | LOCK_NB); waited_ms += 50) {
        if (errno != EWOULDBLOCK || waited_ms >= HOLD_WAIT_S * 1000)
            return -1;
        nanosleep(&tick, NULL);
    }
    return 0;
}

/*
 * The holder: a grandchild of slurmstepd (so slurmstepd never reaps it), root again, that asks the core for the
 * plan, builds the container and keeps its mount namespace alive for the tasks. It runs while slurmstepd sends the
 * launch reply, so a cold image pull does not time srun out.
 */
static void holder_main(const struct helper_config *cfg, json_t *input, int ready, int keep)
{
    struct shared *sh = st.shared;
    json_t *out = NULL;
    struct plan plan;
    int null = open("/dev/null", O_RDWR), r = fcntl(ready, F_DUPFD_CLOEXEC, 100), k = fcntl(keep, F_DUPFD_CLOEXEC, 100);
    /* keep only our two pipe ends: an inherited stdio or socket fd would hold the step open */
    if (null < 0 || r < 0 || k < 0 || dup2(r, 3) < 0 || dup2(k, 4) < 0 || dup2(null, 0) < 0 || dup2(null, 1) < 0 ||
        dup2(null, 2) < 0)
        _exit(1);
    closefrom(5);
    setsid();
    signal(SIGPIPE, SIG_IGN);
    if (setresgid(0, 0, 0) || setresuid(0, 0, 0)) {
        snprintf(sh->error, sizeof(sh->error), "cannot regain root to build the container: %s", strerror(errno));
        sh->state = 2;
        _exit(1);
    }
    if (helper_run(cfg, "hpcctl.plugin.step", input, 0, 900, 4, &out, sh->error, sizeof(sh->error))) {
        sh->state = 2;
        _exit(1);
    }
    char *text = json_dumps(out, JSON_COMPACT);
    if (!text || strlen(text) >= SHARED_SIZE - sizeof(*sh)) {
        snprintf(sh->error, sizeof(sh->error), "the mount plan is too large");
        sh->state = 2;
        _exit(1);
    }
    memcpy(sh->reply, text, strlen(text) + 1);
    const char *hold = json_string_value(json_object_get(out, "hold"));
    int use = hold ? open(hold, O_RDONLY | O_CLOEXEC | O_NOFOLLOW) : -1;
    if (use >= 0 && hold_shared(use)) {
        snprintf(sh->error, sizeof(sh->error), "the image's use lock %s stayed taken for %d s (image cache gc "
                 "holds it; run the step again)", hold, HOLD_WAIT_S);
        sh->state = 2;
        _exit(1);
    }
    json_t *join = json_object_get(out, "join");
    const char *named_dir = json_string_value(json_object_get(out, "named_dir"));
    int dirfd = named_dir ? open(named_dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC) : -1;
    if (plan_from_json(out, &plan, sh->error, sizeof(sh->error))) {
        sh->state = 2;
        _exit(1);
    }
    int joined = json_is_object(join) ? join_running(join, plan.cwd, &sh->cwd_missing, sh->error,
                                                     sizeof(sh->error)) : 1;
    if (joined < 0 || (joined == 1 && plan_enter(&plan, &sh->cwd_missing, sh->error, sizeof(sh->error)))) {
        sh->state = 2;
        _exit(1);
    }
    if (joined == 1)
        record_holder(dirfd);
    sh->holder = (int)getpid();
    sh->state = 1;
    close(3);
    char c;
    while (read(4, &c, 1) < 0 && errno == EINTR)
        ;
    _exit(0);
}

int ctx_remote_user_init(spank_t sp, const struct helper_config *cfg)
{
    int ready[2], keep[2];
    if (!st.enabled)
        return 0;
    st.shared = mmap(NULL, SHARED_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (st.shared == MAP_FAILED) {
        st.shared = NULL;
        snprintf(st.error, sizeof(st.error), "cannot map memory for the container setup: %s", strerror(errno));
        return 0;
    }
    json_t *input = json_pack("{s:o, s:o}", "options", opts_to_json(), "job", job_facts(sp));
    char pin[4096];
    if (spank_getenv(sp, PINNED_ENV, pin, sizeof(pin)) == ESPANK_SUCCESS)
        json_object_set_new(input, "pinned", json_string(pin));
    if (pipe2(ready, O_CLOEXEC) || pipe2(keep, O_CLOEXEC)) {
        snprintf(st.error, sizeof(st.error), "cannot create pipes: %s", strerror(errno));
        json_decref(input);
        return 0;
    }
    pid_t pid = fork();
    if (pid == 0) {
        close(ready[0]);
        close(keep[1]);
        if (fork() != 0)
            _exit(0);
        holder_main(cfg, input, ready[1], keep[0]);
    }
    json_decref(input);
    close(ready[1]);
    close(keep[0]);
    if (pid < 0) {
        snprintf(st.error, sizeof(st.error), "cannot fork: %s", strerror(errno));
        close(ready[0]);
        close(keep[1]);
        return 0;
    }
    while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
        ;
    st.ready_fd = ready[0];
    st.keep_fd = keep[1];
    return 0;
}

/* Wait for the holder, then take the plan it used: the environment and working directory are applied per task. */
static int await_container(void)
{
    char c;
    while (read(st.ready_fd, &c, 1) < 0 && errno == EINTR)
        ;
    if (st.shared->state != 1) {
        snprintf(st.error, sizeof(st.error), "%s",
                 st.shared->state == 2 ? st.shared->error : "the container setup process died");
        return -1;
    }
    json_error_t jerr;
    json_t *reply = json_loads(st.shared->reply, 0, &jerr);
    if (!reply || plan_from_json(reply, &st.plan, st.error, sizeof(st.error))) {
        if (!st.error[0])
            snprintf(st.error, sizeof(st.error), "cannot read the mount plan: %s", jerr.text);
        return -1;
    }
    st.have_plan = 1;
    st.remap_root = json_is_true(json_object_get(reply, "remap_root"));
    st.fallback_dir = json_string_value(json_object_get(reply, "fallback_dir"));
    return 0;
}

int ctx_remote_task_privileged(spank_t sp)
{
    char path[64];
    (void)sp;
    if (!st.enabled || st.error[0] || await_container())
        return 0;
    snprintf(path, sizeof(path), "/proc/%d/ns/mnt", st.shared->holder);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0 || setns(fd, CLONE_NEWNS)) {
        snprintf(st.error, sizeof(st.error), "cannot enter the container: %s", strerror(errno));
        if (fd >= 0)
            close(fd);
        return 0;
    }
    close(fd);
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)) {
        snprintf(st.error, sizeof(st.error), "cannot set no_new_privs: %s", strerror(errno));
        return 0;
    }
    return 0;
}

static const char *task_get(void *ctx, const char *name, char *buf, size_t len)
{
    return spank_getenv((spank_t)ctx, name, buf, (int)len) == ESPANK_SUCCESS ? buf : NULL;
}

static int task_set(void *ctx, const char *name, const char *value)
{
    return spank_setenv((spank_t)ctx, name, value, 1) == ESPANK_SUCCESS ? 0 : -1;
}

static int task_unset(void *ctx, const char *name)
{
    spank_unsetenv((spank_t)ctx, name);
    return 0;
}

/* The task runs `entrypoint... argv...`; PATH is the container's (from the task environment). */
static void exec_entrypoint(spank_t sp)
{
    int argc = 0;
    char **argv = NULL, **env = NULL, path[8192], candidate[4096];
    spank_get_item(sp, S_JOB_ARGV, &argc, &argv);
    spank_get_item(sp, S_JOB_ENV, &env);
    size_t n = 0;
    while (st.plan.entrypoint[n])
        n++;
    char **args = calloc(n + (size_t)argc + 1, sizeof(char *));
    if (!args)
        return;
    for (size_t i = 0; i < n; i++)
        args[i] = (char *)st.plan.entrypoint[i];
    for (int i = 0; i < argc; i++)
        args[n + (size_t)i] = argv[i];
    const char *prog = args[0];
    if (!strchr(prog, '/') && spank_getenv(sp, "PATH", path, sizeof(path)) == ESPANK_SUCCESS) {
        for (char *save = NULL, *dir = strtok_r(path, ":", &save); dir; dir = strtok_r(NULL, ":", &save)) {
            snprintf(candidate, sizeof(candidate), "%s/%s", dir, prog);
            if (access(candidate, X_OK) == 0) {
                prog = candidate;
                break;
            }
        }
    }
    execve(prog, args, env);
    fprintf(stderr, "hpcctl: error: cannot run the image's entrypoint %s: %s (run without "
            "--container-entrypoint)\n", st.plan.entrypoint[0], strerror(errno));
    _exit(126);
}

int ctx_remote_task_init(spank_t sp)
{
    uint32_t rank = 0;
    int local = 0;
    char err[512];
    if (!st.enabled)
        return 0;
    spank_get_item(sp, S_TASK_GLOBAL_ID, &rank);
    spank_get_item(sp, S_TASK_ID, &local);
    if (st.error[0]) {
        if (local == 0) /* the setup failed for the whole node: one line per node, not one per task */
            fprintf(stderr, "hpcctl: error: %s\n", st.error);
        _exit(1);
    }
    struct env_ops ops = {task_get, task_set, task_unset, sp};
    if (plan_apply_env(&st.plan, &ops)) {
        fprintf(stderr, "hpcctl: error: cannot set the container's environment\n");
        _exit(1);
    }
    if (rank == 0)
        for (size_t i = 0; st.plan.notes[i]; i++)
            fprintf(stderr, "hpcctl: %s\n", st.plan.notes[i]);
    const char *dir = st.plan.workdir[0] ? st.plan.workdir : NULL;
    if (!dir && st.shared->cwd_missing) {
        dir = st.fallback_dir ? st.fallback_dir : "/";
        if (rank == 0)
            fprintf(stderr, "hpcctl: the working directory %s does not exist in the container; running in %s "
                    "(mount it with --container-mounts or choose one with --container-workdir)\n", st.plan.cwd,
                    dir);
    }
    if (dir && chdir(dir)) {
        fprintf(stderr, "hpcctl: error: cannot change to %s in the container: %s\n", dir, strerror(errno));
        _exit(1);
    }
    if (dir)
        spank_setenv(sp, "PWD", dir, 1);
    if (st.remap_root && plan_remap_root(st.plan.uid, st.plan.gid, err, sizeof(err))) {
        fprintf(stderr, "hpcctl: error: %s\n", err);
        _exit(1);
    }
    if (id_filter_install()) {
        fprintf(stderr, "hpcctl: error: cannot install the task's seccomp filter: %s\n", strerror(errno));
        _exit(1);
    }
    if (st.plan.entrypoint[0])
        exec_entrypoint(sp);
    return 0;
}

int ctx_remote_exit(spank_t sp)
{
    (void)sp;
    if (st.keep_fd >= 0)
        close(st.keep_fd);
    if (st.ready_fd >= 0)
        close(st.ready_fd);
    st.keep_fd = st.ready_fd = -1;
    if (st.have_plan)
        plan_free(&st.plan);
    st.have_plan = 0;
    return 0;
}
