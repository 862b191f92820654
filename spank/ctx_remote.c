/*
 * remote context (slurmstepd). user_init: fork a holder that asks the Python core for the MountPlan (or reuses the
 * reply kept for an earlier step of the same shape: plan_cache.h) and builds the container once per step and node,
 * while slurmstepd goes on to launch the tasks. task_init_privileged: each task waits for the holder, joins its mount
 * namespace and sets no_new_privs. task_init (as the user): environment, working directory, remap-root, entrypoint.
 * Errors reach the task's stderr (terminal or job error file) as one line in task_init, and the task exits 1.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "contexts.h"
#include "id_filter.h"
#include "opts.h"
#include "plan_cache.h"
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
    uint32_t exited_tasks; /* tasks of the step on this node that have ended */
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
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
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
static int join_running(json_t *join, const struct plan *plan, int *cwd_missing, char *err, size_t errlen)
{
    const char *cwd = plan->cwd;
    char now[64];
    int pid = (int)json_integer_value(json_object_get(join, "pid"));
    const char *start = json_string_value(json_object_get(join, "start"));
    int fd = (int)syscall(SYS_pidfd_open, pid, 0);
    /* checked after the pidfd is open: it then names the very process the core found running, and one setns
     * joins all its namespaces at once (a pid reused meanwhile cannot slip in between) */
    if (fd < 0 || !start || start_time(pid, now, sizeof(now)) || strcmp(now, start)) {
        if (fd >= 0)
            close(fd);
        return 1;
    }
    if (plan_require_separate(pid, plan->unshare, err, errlen)) {
        close(fd);
        return -1;
    }
    int rc = setns(fd, CLONE_NEWNS | PLAN_NAMESPACES);
    int gone = rc && errno == ESRCH; /* its step ended since the check: made anew from the kept state */
    close(fd);
    if (gone)
        return 1;
    if (rc) {
        snprintf(err, errlen, "cannot join the named container: %s", strerror(errno));
        return -1;
    }
    *cwd_missing = cwd[0] && access(cwd, F_OK) != 0;
    return 0;
}

/* Record this holder in the named container's directory (opened before pivot_root), for later steps to join.
 * START: its start time, read from the host's /proc before the container's (which the user may replace) hid it. */
static void record_holder(int dirfd, const char *start)
{
    char line[96];
    if (dirfd < 0 || !start[0])
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
#define SETUP_SECONDS 120 /* the holder's mounts and linker cache, after the core made the plan */
#define SAVE_SECONDS 600  /* --container-save's mksquashfs, which slurmstepd waits for */

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

/* The node's runtime directory as the core has it by default (plugstack: runtime_path=, else the site default). */
static const char *runtime_path(const struct helper_config *cfg)
{
    for (int i = 0; i < cfg->ndefaults; i++)
        if (strncmp(cfg->defaults[i], "runtime_path=", 13) == 0)
            return cfg->defaults[i] + 13;
    return "/run/hpcctl";
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
    char *key = plan_cache_key(input, cfg->site, cfg->defaults, cfg->ndefaults);
    out = key ? plan_cache_lookup(runtime_path(cfg), key, input) : NULL;
    if (!out && helper_run(cfg, "hpcctl.plugin.step", input, 0, 900, 4, &out, sh->error, sizeof(sh->error))) {
        sh->state = 2;
        _exit(1);
    }
    if (key && json_object_get(out, "warm"))
        plan_cache_store(key, out);
    free(key);
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
    /* whatever the image or the user's paths do, the setup ends: SIGALRM kills the holder (slurmstepd forks it
     * with SIGALRM blocked, so unblocked here) */
    sigset_t alarm_only;
    sigemptyset(&alarm_only);
    sigaddset(&alarm_only, SIGALRM);
    signal(SIGALRM, SIG_DFL);
    sigprocmask(SIG_UNBLOCK, &alarm_only, NULL);
    alarm(SETUP_SECONDS);
    char started[64] = "";
    if (start_time((int)getpid(), started, sizeof(started)))
        started[0] = '\0';
    int joined = json_is_object(join) ? join_running(join, &plan, &sh->cwd_missing, sh->error,
                                                     sizeof(sh->error)) : 1;
    if (joined < 0 || (joined == 1 && plan_enter(&plan, &sh->cwd_missing, sh->error, sizeof(sh->error)))) {
        sh->state = 2;
        _exit(1);
    }
    if (joined == 1)
        record_holder(dirfd, started);
    alarm(0);
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
    char *pin = opts_getenv(sp, PINNED_ENV); /* any length: a long reference keeps its pin */
    if (pin)
        json_object_set_new(input, "pinned", json_string(pin));
    free(pin);
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

/* What the core's reply says for the tasks besides the plan: pyxis' --container-workdir and entrypoint log, and
 * whether the step found its named container running in another step. */
static struct {
    const char *workdir; /* "" when not given */
    int entrypoint_log, joined;
} task = {.workdir = ""};

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
    if (json_is_string(json_object_get(reply, "workdir")))
        task.workdir = json_string_value(json_object_get(reply, "workdir"));
    task.entrypoint_log = json_is_true(json_object_get(reply, "entrypoint_log"));
    task.joined = json_is_object(json_object_get(reply, "join"));
    return 0;
}

/* Whether PID is this step's holder: a root process whose fd 4 is the read end of the step's keep pipe. */
static int is_our_holder(int pid)
{
    struct stat pipe_st, proc_st;
    char path[64], link[64], want[64];
    snprintf(path, sizeof(path), "/proc/%d/fd/4", pid);
    ssize_t n = readlink(path, link, sizeof(link) - 1);
    if (n <= 0 || fstat(st.keep_fd, &pipe_st))
        return 0;
    link[n] = '\0';
    snprintf(want, sizeof(want), "pipe:[%lu]", (unsigned long)pipe_st.st_ino);
    snprintf(path, sizeof(path), "/proc/%d", pid);
    return strcmp(link, want) == 0 && stat(path, &proc_st) == 0 && proc_st.st_uid == 0;
}

int ctx_remote_task_privileged(spank_t sp)
{
    char path[64];
    (void)sp;
    if (!st.enabled || st.error[0] || await_container())
        return 0;
    int holder = st.shared->holder;
    snprintf(path, sizeof(path), "/proc/%d/ns/mnt", holder);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    /* the page that names the holder is writable by a task the user may control (remap-root makes it dumpable):
     * checked after the open, so the namespace is that of the very process holding our end of the keep pipe */
    if (fd >= 0 && !is_our_holder(holder)) {
        snprintf(st.error, sizeof(st.error), "the container's setup process is not the one this step started");
        close(fd);
        return 0;
    }
    char err[512];
    if (fd >= 0 && plan_join_namespaces(holder, err, sizeof(err))) {
        snprintf(st.error, sizeof(st.error), "%s", err);
        close(fd);
        return 0;
    }
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

/* A malloc'd copy of the task's variable NAME (NULL when unset), however long it is. */
static char *task_get(void *ctx, const char *name)
{
    return opts_getenv((spank_t)ctx, name);
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

/*
 * The task's working directory, as pyxis picks it: --container-workdir, which must exist; else the image's WORKDIR
 * (enroot's rc script does cd "${WORKDIR:-/}"); else, in a container made for this step, the submit directory where
 * the container has it (hpcctl's default where pyxis starts in /); else /. The notice is the step's, printed once.
 */
static int enter_workdir(spank_t sp, uint32_t rank, int local)
{
    const char *image_dir = st.fallback_dir && strcmp(st.fallback_dir, "/") != 0 ? st.fallback_dir : NULL;
    const char *dir = task.workdir[0] ? task.workdir : image_dir;
    if (dir && chdir(dir) == 0) {
        spank_setenv(sp, "PWD", dir, 1);
        return 0;
    }
    if (task.workdir[0]) {
        if (local == 0)
            fprintf(stderr, "hpcctl: error: cannot change to --container-workdir %s: %s (choose a directory that "
                    "exists in the image, or mount one there with --container-mounts)\n", dir, strerror(errno));
        return -1;
    }
    int missing = image_dir || st.shared->cwd_missing;
    if (!missing && !task.joined)
        return 0; /* slurmstepd has the task in the submit directory */
    if (missing && rank == 0)
        fprintf(stderr, "hpcctl: the %s %s does not exist in the container; running in / (mount it with "
                "--container-mounts or choose one with --container-workdir)\n",
                image_dir ? "image's WORKDIR" : "working directory", image_dir ? image_dir : st.plan.cwd);
    if (chdir("/")) {
        fprintf(stderr, "hpcctl: error: cannot change to / in the container: %s\n", strerror(errno));
        return -1;
    }
    spank_setenv(sp, "PWD", "/", 1);
    return 0;
}

/*
 * The image's entrypoint, with pyxis' meaning: it runs once per node and step, in the first task that gets here, as
 * `ENTRYPOINT... sh -c 'kill -STOP $$'` with the container's own environment (the plan's operations on the
 * --container-env names the host sets and on what enroot passes in, TERM and HOME), its output shown only with
 * --container-entrypoint-log. Every task then takes the environment and the working directory it left: the
 * container's values win, but for --container-env's names; the host's other variables stay.
 */
struct entrypoint_result {
    int owner;      /* pid of the task that runs it; 0 until one does */
    int state;      /* 0: running, 1: done, 2: failed */
    size_t env_len; /* data: the environment (NUL-separated), then the working directory */
    char data[];
};

/* The result lives in the shared mapping, after the core's reply, so the node's tasks find it at the same place. */
static struct entrypoint_result *entrypoint_slot(size_t *room)
{
    size_t used = (sizeof(*st.shared) + strlen(st.shared->reply) + 1 + 63) & ~(size_t)63;
    size_t need = used + sizeof(struct entrypoint_result);
    *room = need < SHARED_SIZE ? SHARED_SIZE - need : 0;
    return *room ? (struct entrypoint_result *)((char *)st.shared + used) : NULL;
}

static char *process_get(void *ctx, const char *name)
{
    (void)ctx;
    const char *value = getenv(name);
    return value ? strdup(value) : NULL;
}

static int process_set(void *ctx, const char *name, const char *value)
{
    (void)ctx;
    return setenv(name, value, 1);
}

static int process_unset(void *ctx, const char *name)
{
    (void)ctx;
    return unsetenv(name);
}

/* Pass the task's value of NAME (its first LEN bytes) on to this process's fresh environment, when it has one. */
static void pass_on(spank_t sp, const char *name, size_t len)
{
    char *var = strndup(name, len), *value = var ? opts_getenv(sp, var) : NULL;
    if (value && *value)
        setenv(var, value, 1);
    free(value);
    free(var);
}

/* In the child: the entrypoint's environment, then exec; output to LOG. Never returns. */
static void entrypoint_child(spank_t sp, int log)
{
    static const char *const enroot_passes[] = {"TERM", "HOME"};
    const char *keep = opts_value(OPT_ENV);
    sigset_t none;
    sigemptyset(&none);
    int null = open("/dev/null", O_RDONLY | O_CLOEXEC);
    if (null < 0 || dup2(null, 0) < 0 || dup2(log, 1) < 0 || dup2(log, 2) < 0 ||
        sigprocmask(SIG_SETMASK, &none, NULL) || clearenv())
        _exit(126);
    for (size_t i = 0; i < sizeof(enroot_passes) / sizeof(*enroot_passes); i++)
        pass_on(sp, enroot_passes[i], strlen(enroot_passes[i]));
    for (const char *p = keep; p && *p; p += strcspn(p, ","), p += *p == ',')
        pass_on(sp, p, strcspn(p, ","));
    struct env_ops ops = {process_get, process_set, process_unset, NULL};
    size_t n = 0;
    while (st.plan.entrypoint[n])
        n++;
    const char **argv = calloc(n + 4, sizeof(char *));
    if (!argv || plan_apply_env(&st.plan, &ops))
        _exit(126);
    memcpy(argv, st.plan.entrypoint, n * sizeof(char *));
    argv[n] = "sh", argv[n + 1] = "-c", argv[n + 2] = "kill -STOP $$ ; exit 0";
    execvp(argv[0], (char **)argv);
    fprintf(stderr, "cannot run %s: %s\n", argv[0], strerror(errno));
    _exit(127);
}

/* The whole of a /proc file, NUL-terminated, any length; LEN: its length. malloc'd, or NULL. */
static char *read_file(const char *path, size_t *len)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    char *buf = NULL;
    size_t cap = 0;
    ssize_t n = 1;
    *len = 0;
    while (fd >= 0 && n > 0) {
        char *grown = *len < cap ? buf : realloc(buf, (cap = cap ? cap * 2 : 4096) + 1);
        if (!grown)
            break;
        buf = grown;
        if ((n = read(fd, buf + *len, cap - *len)) > 0)
            *len += (size_t)n;
    }
    if (fd >= 0)
        close(fd);
    if (n != 0) {
        free(buf);
        return NULL;
    }
    buf[*len] = '\0';
    return buf;
}

/* Where a /proc link points, any length; malloc'd, or NULL. */
static char *read_link(const char *path)
{
    for (size_t cap = 256; cap <= (1u << 20); cap *= 2) {
        char *buf = malloc(cap);
        ssize_t n = buf ? readlink(path, buf, cap) : -1;
        if (n >= 0 && (size_t)n < cap) {
            buf[n] = '\0';
            return buf;
        }
        free(buf);
        if (n < 0)
            return NULL;
    }
    return NULL;
}

/* Keep the environment and working directory of the stopped entrypoint process PID. */
static int entrypoint_keep(pid_t pid, struct entrypoint_result *r, size_t room)
{
    char path[64];
    size_t env_len = 0;
    snprintf(path, sizeof(path), "/proc/%d/environ", (int)pid);
    char *env = read_file(path, &env_len);
    snprintf(path, sizeof(path), "/proc/%d/cwd", (int)pid);
    char *cwd = read_link(path);
    if (env && env_len && env[env_len - 1] != '\0')
        env_len++; /* its last variable's end, which read_file added */
    int ok = env && cwd && env_len + strlen(cwd) + 1 <= room;
    if (ok) {
        memcpy(r->data, env, env_len);
        strcpy(r->data + env_len, cwd);
        r->env_len = env_len;
    }
    free(env);
    free(cwd);
    return ok ? 0 : -1;
}

static void print_log(int log)
{
    char buf[4096];
    ssize_t n;
    lseek(log, 0, SEEK_SET);
    while ((n = read(log, buf, sizeof(buf))) > 0)
        if (write(STDERR_FILENO, buf, (size_t)n) != n)
            break;
}

/* Run the entrypoint until it stops itself where the command would start, and keep what it left in R. */
static int entrypoint_run(spank_t sp, struct entrypoint_result *r, size_t room, char *err, size_t errlen)
{
    int log = memfd_create("hpcctl-entrypoint", MFD_CLOEXEC), status = 0;
    struct sigaction dfl = {.sa_handler = SIG_DFL}, old;
    sigaction(SIGCHLD, &dfl, &old); /* a stop is reported to waitpid only while SIGCHLD is not ignored */
    pid_t pid = log < 0 ? -1 : fork();
    if (pid == 0)
        entrypoint_child(sp, log);
    while (pid > 0 && waitpid(pid, &status, WUNTRACED) < 0 && errno == EINTR)
        ;
    int stopped = pid > 0 && WIFSTOPPED(status), kept = stopped && entrypoint_keep(pid, r, room) == 0;
    if (stopped) {
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
    }
    sigaction(SIGCHLD, &old, NULL);
    if (log >= 0 && (task.entrypoint_log || !stopped))
        print_log(log);
    if (log >= 0)
        close(log);
    if (pid < 0)
        snprintf(err, errlen, "cannot start the image's entrypoint: %s", strerror(errno));
    else if (!stopped)
        snprintf(err, errlen, "the image's entrypoint %s %s %d before running the command (its output is above; "
                 "run with --no-container-entrypoint if it does not run its arguments)", st.plan.entrypoint[0],
                 WIFSIGNALED(status) ? "was killed by signal" : "exited with status",
                 WIFSIGNALED(status) ? WTERMSIG(status) : WEXITSTATUS(status));
    else if (!kept)
        snprintf(err, errlen, "cannot keep the environment the image's entrypoint left (more than %zu bytes?)", room);
    return kept ? 0 : -1;
}

/* The node's other tasks wait for the one running the entrypoint, as long as it lives. */
static int entrypoint_wait(struct entrypoint_result *r)
{
    struct timespec tick = {0, 2 * 1000 * 1000};
    while (__atomic_load_n(&r->state, __ATOMIC_ACQUIRE) == 0) {
        int owner = __atomic_load_n(&r->owner, __ATOMIC_ACQUIRE);
        if (kill(owner, 0) && errno == ESRCH && __atomic_load_n(&r->state, __ATOMIC_ACQUIRE) == 0)
            return -1;
        nanosleep(&tick, NULL);
    }
    return __atomic_load_n(&r->state, __ATOMIC_ACQUIRE) == 1 ? 0 : -1;
}

/* Take what the entrypoint left: its variables (but for --container-env's names the task has), its directory. */
static int entrypoint_apply(spank_t sp, const struct entrypoint_result *r)
{
    for (const char *var = r->data; var < r->data + r->env_len; var += strlen(var) + 1) {
        const char *eq = strchr(var, '=');
        char *name = eq && eq != var ? strndup(var, (size_t)(eq - var)) : NULL;
        if (name)
            spank_setenv(sp, name, eq + 1, !opts_env_listed(name, strlen(name)));
        free(name);
    }
    const char *cwd = r->data + r->env_len;
    if (task.workdir[0])
        return 0;
    if (chdir(cwd)) {
        fprintf(stderr, "hpcctl: error: cannot change to %s, where the image's entrypoint left: %s\n", cwd,
                strerror(errno));
        return -1;
    }
    spank_setenv(sp, "PWD", cwd, 1);
    return 0;
}

static int entrypoint(spank_t sp)
{
    char err[1024];
    size_t room = 0;
    struct entrypoint_result *r = entrypoint_slot(&room);
    int nobody = 0;
    if (!r) {
        fprintf(stderr, "hpcctl: error: no room to run the image's entrypoint (the mount plan is too large)\n");
        return -1;
    }
    if (__atomic_compare_exchange_n(&r->owner, &nobody, (int)getpid(), 0, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE)) {
        int rc = entrypoint_run(sp, r, room, err, sizeof(err));
        __atomic_store_n(&r->state, rc ? 2 : 1, __ATOMIC_RELEASE);
        if (rc) {
            fprintf(stderr, "hpcctl: error: %s\n", err);
            return -1;
        }
    } else if (entrypoint_wait(r)) {
        return -1; /* the task that ran it said why */
    }
    return entrypoint_apply(sp, r);
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
    if (enter_workdir(sp, rank, local))
        _exit(1);
    if (st.remap_root && plan_remap_root(st.plan.uid, st.plan.gid, err, sizeof(err))) {
        fprintf(stderr, "hpcctl: error: %s\n", err);
        _exit(1);
    }
    if (id_filter_install()) {
        fprintf(stderr, "hpcctl: error: cannot install the task's seccomp filter: %s\n", strerror(errno));
        _exit(1);
    }
    if (st.plan.entrypoint[0] && entrypoint(sp))
        _exit(1);
    return 0;
}

/* The child that writes the container's state: the container's root mount alone (no binds: open_tree without
 * AT_RECURSIVE), read and written as the job's user by the host's mksquashfs. CONTAINER_NS: its mount namespace. */
static void save_child(int container_ns, const char *path, uid_t uid, gid_t gid, gid_t *gids, int ngids)
{
    char *const argv[] = {"mksquashfs", ".", (char *)path, "-noappend", "-all-root", "-no-progress", "-quiet",
                          "-comp", "zstd", NULL};
    char *const envp[] = {"PATH=/usr/sbin:/usr/bin:/sbin:/bin", NULL};
    /* a mount can be cloned only in its own namespace; the host's mksquashfs then runs back in the host's */
    int host_ns = open("/proc/self/ns/mnt", O_RDONLY | O_CLOEXEC), tree = -1;
    if (host_ns < 0 || setns(container_ns, CLONE_NEWNS) ||
        (tree = open_tree(AT_FDCWD, "/", OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC)) < 0 || setns(host_ns, CLONE_NEWNS) ||
        fchdir(tree) || setgroups((size_t)ngids, gids) || setresgid(gid, gid, gid) || setresuid(uid, uid, uid) ||
        prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0))
        _exit(126);
    execve("/usr/bin/mksquashfs", argv, envp);
    _exit(127);
}

/* --container-save: after the step, on its first node, from the checked holder's container. */
static void save_container(spank_t sp)
{
    json_error_t jerr;
    json_t *reply = st.shared && st.shared->state == 1 ? json_loads(st.shared->reply, 0, &jerr) : NULL;
    const char *path = json_string_value(json_object_get(reply, "save"));
    uid_t uid = 0;
    gid_t gid = 0, *gids = NULL;
    int ngids = 0, status = 0;
    char root_path[64];
    /* the user's ids from Slurm, never from the shared page (a dumpable task can write it) */
    if (!path || path[0] != '/' || spank_get_item(sp, S_JOB_UID, &uid) || spank_get_item(sp, S_JOB_GID, &gid) ||
        spank_get_item(sp, S_JOB_SUPPLEMENTARY_GIDS, &gids, &ngids)) {
        json_decref(reply);
        return;
    }
    /* the pid read once, its namespace opened, then checked: what is saved is this step's container */
    int holder = st.shared->holder;
    snprintf(root_path, sizeof(root_path), "/proc/%d/ns/mnt", holder);
    int root = open(root_path, O_RDONLY | O_CLOEXEC);
    if (root >= 0 && !is_our_holder(holder)) {
        close(root);
        root = -1;
    }
    pid_t pid = root >= 0 ? fork() : -1;
    if (pid == 0)
        save_child(root, path, uid, gid, gids, ngids);
    if (root >= 0)
        close(root);
    /* bounded: the child runs as the user, who can stop or slow it, and slurmstepd waits here */
    struct timespec tick = {0, 20 * 1000 * 1000};
    int waited_ms = 0;
    while (pid > 0 && waitpid(pid, &status, WNOHANG) == 0) {
        if (waited_ms >= SAVE_SECONDS * 1000) {
            kill(pid, SIGKILL);
            waitpid(pid, &status, 0);
            break;
        }
        nanosleep(&tick, NULL);
        waited_ms += 20;
    }
    if (pid <= 0 || !WIFEXITED(status) || WEXITSTATUS(status))
        slurm_error("hpcctl: --container-save: could not write %s (status %d, limit %d s): check that you can "
                    "write there", path, status, SAVE_SECONDS);
    json_decref(reply);
}

/* A task of the step ended (in slurmstepd, before srun hears of it): once the node's last one has, the container
 * is saved, so that srun returns after the file is complete. */
int ctx_remote_task_exit(spank_t sp)
{
    uint32_t tasks = 0;
    if (!st.enabled || st.keep_fd < 0 || spank_get_item(sp, S_JOB_LOCAL_TASK_COUNT, &tasks) ||
        ++st.exited_tasks != tasks)
        return 0;
    save_container(sp);
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
