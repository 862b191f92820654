/*
 * The warm path: a later step of a job with the same shape (options, pinned image, user, working directory, node,
 * site file) reuses the core's reply without running Python. The core says what else the reply was built from
 * (hpcctl/plugin/warm.py: job variables, GPU devices, files); the entry is reused only while all of it still holds.
 * Entries are root's: RUNTIME/plans/HASH.json in the root-only runtime directory, rebuilt at least every 10 minutes
 * (an expired one is removed when met; the job epilog sweeps the rest).
 */
#ifndef HPCCTL_PLAN_CACHE_H
#define HPCCTL_PLAN_CACHE_H

#include <jansson.h>

/* The key of a step: INPUT is the request the core would get; SITE the site file, EXTRA the plugstack arguments
 * that reach the core. malloc'd, or NULL. */
char *plan_cache_key(json_t *input, const char *site, char *const *extra, int nextra);

/* The reply kept under KEY when every condition it recorded still holds, with this step's container record made
 * (named_dir); NULL: ask the core. */
json_t *plan_cache_lookup(const char *runtime, const char *key, json_t *input);

/* Keep the core's REPLY under KEY when its "warm" record allows; the "warm" member is removed from REPLY. */
void plan_cache_store(const char *key, json_t *reply);

#endif
