/* Run the Python core: fork/exec `<python> -I -m MODULE` with a cleared environment, JSON in, JSON out. */
#ifndef HPCCTL_HELPER_H
#define HPCCTL_HELPER_H

#include <jansson.h>
#include <stddef.h>

struct helper_config {
    char python[4096]; /* interpreter of the venv hpcctl is installed in (plugstack: python=) */
    char site[4096];   /* site config (plugstack: site=) */
    char *defaults[8]; /* other KEY=VALUE arguments: the site's plugin defaults on this node, checked in Python */
    int ndefaults;
};

/* Parse plugstack.conf arguments key=value; unknown keys are an error, written to err. */
int helper_config_parse(struct helper_config *cfg, int ac, char **av, char *err, size_t errlen);

/*
 * Run MODULE with `input` on stdin, bounded by timeout_s and an address-space limit. as_root: become uid/gid 0
 * first (slurmstepd keeps real uid 0 while its effective uid is the user's). watch_fd (-1: none): the helper is
 * killed as soon as it becomes readable or hangs up (the step it works for has ended). On success *output is the
 * decoded JSON (caller decrefs) and 0 is returned; otherwise err holds one line: the helper's last stderr line, or
 * why it could not run.
 */
int helper_run(const struct helper_config *cfg, const char *module, json_t *input, int as_root, int timeout_s,
               int watch_fd, json_t **output, char *err, size_t errlen);

#endif
