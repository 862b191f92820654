/*
 * The seccomp filter pyxis and enroot install in every task: calls that change ownership or identity (chown family,
 * set*id, setgroups) report success without doing anything. In a container whose files are the user's, package
 * managers then work as they would as root (apt drops to _apt, dpkg chowns what it unpacks) while the kernel still
 * lets the task do only what its user may.
 */
#define _GNU_SOURCE
#include "id_filter.h"

#include <errno.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/syscall.h>
#include <unistd.h>

#ifndef AUDIT_ARCH_AARCH64
#define AUDIT_ARCH_AARCH64 (183 | 0x80000000u | 0x40000000u)
#endif

#define SUCCEED(nr) BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, (nr), 0, 1), BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO)

static struct sock_filter filter[] = {
    BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch)),
    BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, AUDIT_ARCH_X86_64, 1, 0),
    BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, AUDIT_ARCH_AARCH64, 0, 1),
    BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
#ifdef SYS_chown
    SUCCEED(SYS_chown),
#endif
#ifdef SYS_lchown
    SUCCEED(SYS_lchown),
#endif
    SUCCEED(SYS_fchown),
    SUCCEED(SYS_fchownat),
    SUCCEED(SYS_setuid),
    SUCCEED(SYS_setgid),
    SUCCEED(SYS_setreuid),
    SUCCEED(SYS_setregid),
    SUCCEED(SYS_setresuid),
    SUCCEED(SYS_setresgid),
    SUCCEED(SYS_setgroups),
    BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
};

int id_filter_install(void)
{
    struct sock_fprog prog = {sizeof(filter) / sizeof(filter[0]), filter};
    return (int)syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &prog);
}
