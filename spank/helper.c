/* fork/exec of the Python core. The child gets a fixed environment so users cannot redirect the interpreter. */
#define _GNU_SOURCE
#include "helper.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define HELPER_MEMORY (4UL << 30) /* address space of the Python core: a pull streams, it never holds an image */

static char *const clean_env[] = {
    "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "LANG=C.UTF-8", "PYTHONDONTWRITEBYTECODE=1",
    NULL,
};

int helper_config_parse(struct helper_config *cfg, int ac, char **av, char *err, size_t errlen)
{
    snprintf(cfg->python, sizeof(cfg->python), "%s", "/opt/hpcctl/venv/bin/python");
    snprintf(cfg->site, sizeof(cfg->site), "%s", "/etc/hpcctl/site.yaml");
    cfg->ndefaults = 0;
    for (int i = 0; i < ac; i++) {
        if (strncmp(av[i], "python=", 7) == 0)
            snprintf(cfg->python, sizeof(cfg->python), "%s", av[i] + 7);
        else if (strncmp(av[i], "site=", 5) == 0)
            snprintf(cfg->site, sizeof(cfg->site), "%s", av[i] + 5);
        else if (strchr(av[i], '=') && cfg->ndefaults < (int)(sizeof(cfg->defaults) / sizeof(cfg->defaults[0])))
            cfg->defaults[cfg->ndefaults++] = av[i];
        else {
            snprintf(err, errlen, "plugstack.conf argument '%s' is not KEY=VALUE (known: python=PATH site=PATH "
                     "execute_entrypoint=0|1 mount_home=0|1 writable=0|1 runtime_path=DIR)", av[i]);
            return -1;
        }
    }
    return 0;
}

struct buf {
    char *data;
    size_t len;
};

static int buf_read(int fd, struct buf *b)
{
    char chunk[8192];
    ssize_t n = read(fd, chunk, sizeof(chunk));
    if (n <= 0)
        return n == 0 || errno != EINTR ? 0 : 1;
    char *grown = realloc(b->data, b->len + (size_t)n + 1);
    if (!grown)
        return 0;
    b->data = grown;
    memcpy(b->data + b->len, chunk, (size_t)n);
    b->len += (size_t)n;
    b->data[b->len] = '\0';
    return 1;
}

static void last_line(const struct buf *b, char *out, size_t outlen)
{
    if (!b->len) {
        out[0] = '\0';
        return;
    }
    size_t end = b->len;
    while (end > 0 && (b->data[end - 1] == '\n' || b->data[end - 1] == '\r'))
        end--;
    size_t start = end;
    while (start > 0 && b->data[start - 1] != '\n')
        start--;
    snprintf(out, outlen, "%.*s", (int)(end - start), b->data + start);
}

static void child(const struct helper_config *cfg, const char *module, int in, int out, int errfd, int as_root)
{
    struct rlimit mem = {HELPER_MEMORY, HELPER_MEMORY};
    if ((as_root && (setresuid(0, 0, 0) || setresgid(0, 0, 0) || setgroups(0, NULL))) || setrlimit(RLIMIT_AS, &mem))
        _exit(126);
    /* slurmd may run with 0-2 closed, so the pipes can be those very fds: move them out of the way first */
    in = fcntl(in, F_DUPFD_CLOEXEC, 10);
    out = fcntl(out, F_DUPFD_CLOEXEC, 10);
    errfd = fcntl(errfd, F_DUPFD_CLOEXEC, 10);
    if (in < 0 || out < 0 || errfd < 0 || dup2(in, 0) < 0 || dup2(out, 1) < 0 || dup2(errfd, 2) < 0)
        _exit(126);
    closefrom(3);
    char *argv[8 + 2 * (sizeof(cfg->defaults) / sizeof(cfg->defaults[0]))] = {
        (char *)cfg->python, "-I", "-m", (char *)module, "--site", (char *)cfg->site};
    int argc = 6;
    for (int i = 0; i < cfg->ndefaults; i++) {
        argv[argc++] = "--default";
        argv[argc++] = cfg->defaults[i];
    }
    argv[argc] = NULL;
    execve(cfg->python, argv, clean_env);
    dprintf(2, "cannot run %s: %s (fix python= in plugstack.conf)\n", cfg->python, strerror(errno));
    _exit(127);
}

int helper_run(const struct helper_config *cfg, const char *module, json_t *input, int as_root, int timeout_s,
               int watch_fd, json_t **output, char *err, size_t errlen)
{
    int in[2], out[2], errp[2];
    char *payload = json_dumps(input, JSON_COMPACT);
    struct buf obuf = {0}, ebuf = {0};
    int rc = -1, status = 0;
    *output = NULL;
    if (!payload || pipe2(in, O_CLOEXEC) || pipe2(out, O_CLOEXEC) || pipe2(errp, O_CLOEXEC)) {
        snprintf(err, errlen, "cannot start the hpcctl helper: %s", strerror(errno));
        free(payload);
        return -1;
    }
    pid_t pid = fork();
    if (pid == 0)
        child(cfg, module, in[0], out[1], errp[1], as_root);
    close(in[0]);
    close(out[1]);
    close(errp[1]);
    if (pid < 0) {
        snprintf(err, errlen, "cannot fork the hpcctl helper: %s", strerror(errno));
        close(in[1]);
        close(out[0]);
        close(errp[0]);
        free(payload);
        return -1;
    }
    /* The input is small (options and job facts): it fits in the pipe buffer, so write it all at once. */
    size_t len = strlen(payload), done = 0;
    signal(SIGPIPE, SIG_IGN);
    while (done < len) {
        ssize_t n = write(in[1], payload + done, len - done);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        done += (size_t)n;
    }
    close(in[1]);
    free(payload);

    struct timespec start, now;
    clock_gettime(CLOCK_MONOTONIC, &start);
    struct pollfd fds[3] = {{out[0], POLLIN, 0}, {errp[0], POLLIN, 0}, {watch_fd, POLLIN, 0}};
    int open_fds = 2, timed_out = 0, abandoned = 0;
    while (open_fds > 0) {
        clock_gettime(CLOCK_MONOTONIC, &now);
        long left_ms = timeout_s * 1000L - ((now.tv_sec - start.tv_sec) * 1000L +
                                            (now.tv_nsec - start.tv_nsec) / 1000000L);
        if (left_ms <= 0) {
            timed_out = 1;
            kill(pid, SIGKILL);
            break;
        }
        int n = poll(fds, 3, (int)left_ms);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            break;
        if (watch_fd >= 0 && fds[2].revents) {
            abandoned = 1;
            kill(pid, SIGKILL);
            break;
        }
        for (int i = 0; i < 2; i++)
            if (fds[i].fd >= 0 && fds[i].revents) {
                if (!buf_read(fds[i].fd, i == 0 ? &obuf : &ebuf)) {
                    close(fds[i].fd);
                    fds[i].fd = -1;
                    open_fds--;
                }
            }
    }
    for (int i = 0; i < 2; i++)
        if (fds[i].fd >= 0)
            close(fds[i].fd);
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
        ;
    if (timed_out)
        snprintf(err, errlen, "the hpcctl helper (%s) took longer than %d s and was stopped", module, timeout_s);
    else if (abandoned)
        snprintf(err, errlen, "the step ended before the hpcctl helper (%s) finished; it was stopped", module);
    else if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        last_line(&ebuf, err, errlen);
        if (!err[0])
            snprintf(err, errlen, "the hpcctl helper (%s) failed with status %d and printed nothing", module,
                     WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status));
    } else {
        json_error_t jerr;
        *output = obuf.data ? json_loads(obuf.data, 0, &jerr) : NULL;
        if (*output)
            rc = 0;
        else
            snprintf(err, errlen, "the hpcctl helper (%s) printed no valid JSON", module);
    }
    free(obuf.data);
    free(ebuf.data);
    return rc;
}
