/*
 * hpcctl-exec: run a command in a container from a MountPlan without Slurm (`hpcctl run`, admins debugging a
 * site config, GPU checks). Usage: hpcctl-exec PLAN.json|- -- CMD [ARG...]; needs root. The command runs as
 * the plan's uid/gid with no_new_privs, in the plan's environment applied to this process's environment.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <grp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <unistd.h>

#include "plan_exec.h"

static const char *env_get(void *ctx, const char *name, char *buf, size_t len)
{
    (void)ctx;
    const char *v = getenv(name);
    if (!v)
        return NULL;
    snprintf(buf, len, "%s", v);
    return buf;
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

static int die(const char *fmt, const char *arg)
{
    fprintf(stderr, "hpcctl-exec: error: ");
    fprintf(stderr, fmt, arg);
    fputc('\n', stderr);
    return 1;
}

int main(int argc, char **argv)
{
    char err[1024];
    struct plan plan;
    json_error_t jerr;
    int cwd_missing = 0;
    if (argc < 4 || strcmp(argv[2], "--") != 0)
        return die("%s", "usage: hpcctl-exec PLAN.json|- -- CMD [ARG...]");
    json_t *doc = strcmp(argv[1], "-") == 0 ? json_loadf(stdin, 0, &jerr) : json_load_file(argv[1], 0, &jerr);
    if (!doc)
        return die("cannot read the plan: %s", jerr.text);
    if (plan_from_json(doc, &plan, err, sizeof(err)) || plan_enter(&plan, &cwd_missing, err, sizeof(err)))
        return die("%s", err);
    struct env_ops ops = {env_get, env_set, env_unset, NULL};
    plan_apply_env(&plan, &ops);
    for (size_t i = 0; plan.notes[i]; i++)
        fprintf(stderr, "hpcctl: %s\n", plan.notes[i]);
    const char *dir = plan.workdir[0] ? plan.workdir : (plan.cwd[0] && !cwd_missing ? plan.cwd : "/");
    if (chdir(dir))
        return die("cannot change to %s in the container", dir);
    setenv("PWD", dir, 1);
    if (setgroups(plan.ngroups, plan.groups) || setresgid(plan.gid, plan.gid, plan.gid) ||
        setresuid(plan.uid, plan.uid, plan.uid))
        return die("cannot become the plan's user: %s", strerror(errno));
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0))
        return die("cannot set no_new_privs: %s", strerror(errno));
    size_t n = 0;
    while (plan.entrypoint[n])
        n++;
    char **args = calloc(n + (size_t)argc, sizeof(char *));
    if (!args)
        return die("%s", "out of memory");
    for (size_t i = 0; i < n; i++)
        args[i] = (char *)plan.entrypoint[i];
    for (int i = 3; i < argc; i++)
        args[n + (size_t)(i - 3)] = argv[i];
    execvp(args[0], args);
    return die("cannot run %s in the container: %s", args[0]) + 126;
}
