/* Per-job pins in /tmp/hpcctl-pins-<uid>/<jobid>: one "<image> <pinned>" line per image. See job_pins.h. */
#define _GNU_SOURCE
#include "job_pins.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <slurm/spank.h>

/* The user's pin directory, opened without following links, owned by them and private; -1 otherwise. */
static int pin_dir(int create)
{
    char path[64];
    struct stat st;
    snprintf(path, sizeof(path), "/tmp/hpcctl-pins-%u", (unsigned)getuid());
    if (create && mkdir(path, 0700) && errno != EEXIST)
        return -1;
    int fd = open(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0)
        return -1;
    if (fstat(fd, &st) || st.st_uid != getuid() || (st.st_mode & 077)) {
        close(fd);
        return -1;
    }
    return fd;
}

static int valid_jobid(const char *jobid)
{
    return jobid && *jobid && strspn(jobid, "0123456789") == strlen(jobid) && strlen(jobid) < 32;
}

/* "...@sha256:<64 hex>": a whole line from job_pin_add, not a torn one */
static int digest_pinned(const char *pinned)
{
    const char *at = strstr(pinned, "@sha256:");
    return at && strlen(at + 8) == 64 && strspn(at + 8, "0123456789abcdef") == 64;
}

int job_pin_find(const char *jobid, const char *image, char *out, size_t outlen)
{
    char line[8192];
    size_t n = strlen(image);
    int rc = -1;
    if (!valid_jobid(jobid))
        return -1;
    int dir = pin_dir(0);
    if (dir < 0)
        return -1;
    int fd = openat(dir, jobid, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    close(dir);
    FILE *fh = fd >= 0 ? fdopen(fd, "r") : NULL;
    if (!fh) {
        if (fd >= 0)
            close(fd);
        return -1;
    }
    while (rc && fgets(line, sizeof(line), fh)) {
        line[strcspn(line, "\n")] = '\0';
        if (strncmp(line, image, n) == 0 && line[n] == ' ' && digest_pinned(line + n + 1) &&
            snprintf(out, outlen, "%s", line + n + 1) < (int)outlen)
            rc = 0;
    }
    fclose(fh);
    return rc;
}

void job_pin_add(const char *jobid, const char *image, const char *pinned)
{
    char line[8192];
    if (!valid_jobid(jobid) || strchr(image, '\n') || strchr(pinned, '\n'))
        return;
    int n = snprintf(line, sizeof(line), "%s %s\n", image, pinned);
    int dir = pin_dir(1);
    if (n <= 0 || n >= (int)sizeof(line) || dir < 0) {
        if (dir >= 0)
            close(dir);
        return;
    }
    int fd = openat(dir, jobid, O_WRONLY | O_APPEND | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600);
    close(dir);
    if (fd < 0)
        return;
    if (write(fd, line, (size_t)n) != n)
        slurm_debug("hpcctl: could not record the pin of %s for job %s", image, jobid);
    close(fd);
}
