/* io/process_int.h: what io/process.c (the handle, its pipes and waits)
 * asks of io/process_exec.c (making the child and running the program). */
#ifndef CORO_IO_PROCESS_INT_H
#define CORO_IO_PROCESS_INT_H

#include <sys/types.h>

/* What the child is to run, fully worked out by the parent. */
typedef struct coro__exec {
    /* execve's arguments; argv[0] is looked up in PATH unless it holds a
     * '/' (see coro__exec). */
    const char *const *argv;
    const char *const *envp;
    /* The working directory to change to first, or NULL. */
    const char *dir;
    /* The descriptor to install as 0, 1 and 2, each >= 3 (so installing
     * one never overwrites the source of another), or -1 to leave what is
     * there alone. */
    int stdio[3];
    /* Make the child the leader of a new process group. */
    int pgroup;
} coro__exec_t;

/* Start x's program in a new child process and return its pid. Every
 * descriptor but 0, 1 and 2 is closed in the child, its signal mask is
 * emptied and every disposition set to SIG_DFL before the exec. Returns
 * once the program runs; if anything failed in the child before that
 * (chdir, exec: ENOENT, EACCES, ENOEXEC...) the child is reaped and this
 * returns -1 with that errno. Also -1 with errno: EINVAL argv empty,
 * ENOENT argv[0] "", ENOMEM, EMFILE/ENFILE (its error pipe), EAGAIN (no
 * process). The calling thread blocks until the child has exec'd or
 * failed; the caller's stack is never touched by the child. */
pid_t coro__exec(const coro__exec_t *x);

/* fd itself if it is 3 or above, else a close-on-exec copy numbered 3 or
 * above, fd being closed (so it can never be the target of a stdio
 * install). -1 with errno (fd is closed then too). */
int coro__fd_above_stdio(int fd);

#endif /* CORO_IO_PROCESS_INT_H */
