/*
 * Pins a job's steps made (image -> image@digest), kept per user, job and submit host in
 * /tmp/hpcctl-pins-<uid>/<jobid>, so that every srun of the job runs the image its first srun ran, even when the
 * tag moves meanwhile, and later steps need neither the registry nor the Python helper. A missing, foreign or
 * unreadable file only means the tag is resolved again.
 */
#ifndef HPCCTL_JOB_PINS_H
#define HPCCTL_JOB_PINS_H

#include <stddef.h>

/* The pinned reference this job recorded for `image`, copied into out; -1 when there is none. */
int job_pin_find(const char *jobid, const char *image, char *out, size_t outlen);
/* Record a pin for later steps of the job (best effort). */
void job_pin_add(const char *jobid, const char *image, const char *pinned);

#endif
