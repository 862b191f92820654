/* Ownership and identity changes succeed without effect in the task (pyxis/enroot's seccomp filter). */
#ifndef HPCCTL_ID_FILTER_H
#define HPCCTL_ID_FILTER_H

/* Needs no_new_privs (set before the task runs); 0 or -1 with errno. */
int id_filter_install(void);

#endif
