/*
 * hpcctl-exec: run a command in a container from a MountPlan without Slurm (`hpcctl run`, admins debugging a
 * site config, GPU checks). Usage: hpcctl-exec PLAN.json|- -- CMD [ARG...]; needs root. PLAN.json is what
 * `hpcctl run --plan-only --json` prints (hpcctl/container/container.schema.json); `hpcctl-exec --check PLAN.json`
 * prints what it understood of one, and runs nothing. The command runs as the plan's uid/gid with no_new_privs, in the plan's
 * environment applied to this process's environment, in the plan's working directory as a job's task would.
 * Exit status: the command's; 125 when the container cannot be set up, 126 when the command cannot be run,
 * 127 when it is not found (as docker and the shell).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <grp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <unistd.h>

#include "id_filter.h"
#include "plan_exec.h"

static char *env_get(void *ctx, const char *name)
{
    (void)ctx;
    const char *v = getenv(name);
    return v ? strdup(v) : NULL;
}

static int env_set(void *ctx, const char *name, const char *value)
{
    (void)ctx;
    return setenv(name, value, 1);
}

static int env_unset(void *ctx, const char *name)
{
    (void)ctx;
    return unsetenv(name);
}

enum { SETUP_FAILED = 125, CANNOT_RUN = 126, NOT_FOUND = 127 };

__attribute__((format(printf, 2, 3))) static int die(int status, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "hpcctl: error: ");
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    return status;
}

/* As a job's task: --container-workdir, else the working directory when the container has it, else the image's. */
static int change_dir(const struct plan *p, int cwd_missing)
{
    const char *dir = p->workdir[0] ? p->workdir : p->cwd[0] ? p->cwd : "/";
    if (!p->workdir[0] && (cwd_missing || chdir(dir))) {
        const char *fallback = json_string_value(json_object_get(p->json, "fallback_dir"));
        fallback = fallback ? fallback : "/";
        fprintf(stderr, "hpcctl: the working directory %s %s in the container; running in %s (mount it, or "
                "choose one with --workdir)\n", dir, cwd_missing ? "does not exist" : "is not usable", fallback);
        dir = fallback;
    }
    if (chdir(dir))
        return die(SETUP_FAILED, "cannot change to %s in the container: %s", dir, strerror(errno));
    setenv("PWD", dir, 1);
    return 0;
}

static const char *propagation_name(unsigned long propagation)
{
    return propagation == MS_SLAVE ? "slave" : propagation == MS_SHARED ? "shared"
           : propagation == MS_UNBINDABLE ? "unbindable" : "private";
}

/* --check: what the C side understood of a plan document, one line per item (tests compare it with the JSON). */
static int check(const char *file)
{
    char err[1024];
    struct plan p;
    json_error_t jerr;
    json_t *doc = json_load_file(file, 0, &jerr);
    if (!doc)
        return die(SETUP_FAILED, "cannot read the plan %s: %s", file, jerr.text);
    if (plan_from_json(doc, &p, err, sizeof(err)))
        return die(SETUP_FAILED, "%s", err);
    printf("image %s user_file=%d owner_idmap=%d writable=%d ldconfig=%d uid=%u gid=%u groups=%zu\n", p.image,
           p.image_user_file, p.owner_idmap, p.writable, p.ldconfig, (unsigned)p.uid, (unsigned)p.gid, p.ngroups);
    for (size_t i = 0; i < p.nmounts; i++) {
        const struct plan_mount *m = &p.mounts[i];
        printf("mount %s %s %s create=%s ro=%d as_user=%d late=%d noexec=%d recursive=%d propagation=%s\n",
               m->target, m->kind, m->source, m->create, m->readonly, m->as_user, m->late, m->noexec, m->recursive,
               propagation_name(m->propagation));
    }
    for (size_t i = 0; i < p.nenv; i++)
        printf("env %s %s=%s\n", p.env[i].op, p.env[i].name, p.env[i].value);
    for (size_t i = 0; p.ldconfig_dirs[i]; i++)
        printf("ldconfig_dir %s\n", p.ldconfig_dirs[i]);
    plan_free(&p);
    return 0;
}

int main(int argc, char **argv)
{
    char err[1024];
    struct plan plan;
    json_error_t jerr;
    int cwd_missing = 0;
    if (argc == 3 && strcmp(argv[1], "--check") == 0)
        return check(argv[2]);
    if (argc < 4 || strcmp(argv[2], "--") != 0)
        return die(SETUP_FAILED, "usage: hpcctl-exec PLAN.json|- -- CMD [ARG...]");
    json_t *doc = strcmp(argv[1], "-") == 0 ? json_loadf(stdin, 0, &jerr) : json_load_file(argv[1], 0, &jerr);
    if (!doc)
        return die(SETUP_FAILED, "cannot read the plan %s: %s", argv[1], jerr.text);
    if (plan_from_json(doc, &plan, err, sizeof(err)) || plan_enter(&plan, &cwd_missing, err, sizeof(err)))
        return die(SETUP_FAILED, "%s", err);
    struct env_ops ops = {env_get, env_set, env_unset, NULL};
    if (plan_apply_env(&plan, &ops))
        return die(SETUP_FAILED, "cannot set the container's environment: %s", strerror(errno));
    for (size_t i = 0; plan.notes[i]; i++)
        fprintf(stderr, "hpcctl: %s\n", plan.notes[i]);
    if (setgroups(plan.ngroups, plan.groups) || setresgid(plan.gid, plan.gid, plan.gid) ||
        setresuid(plan.uid, plan.uid, plan.uid))
        return die(SETUP_FAILED, "cannot become uid %u: %s", (unsigned)plan.uid, strerror(errno));
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0))
        return die(SETUP_FAILED, "cannot set no_new_privs: %s", strerror(errno));
    if (id_filter_install())
        return die(SETUP_FAILED, "cannot install the seccomp filter: %s", strerror(errno));
    int rc = change_dir(&plan, cwd_missing);
    if (rc)
        return rc;
    size_t n = 0;
    while (plan.entrypoint[n])
        n++;
    char **args = calloc(n + (size_t)argc, sizeof(char *));
    if (!args)
        return die(SETUP_FAILED, "out of memory");
    for (size_t i = 0; i < n; i++)
        args[i] = (char *)plan.entrypoint[i];
    for (int i = 3; i < argc; i++)
        args[n + (size_t)(i - 3)] = argv[i];
    execvp(args[0], args);
    int saved = errno;
    return die(saved == ENOENT ? NOT_FOUND : CANNOT_RUN, "cannot run %s in the container: %s", args[0],
               strerror(saved));
}
