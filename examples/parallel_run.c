/* parallel_run.c: run shell commands in parallel, like `xargs -P N`, with
 * a deadline each and their output captured.
 *
 * WHAT IT SHOWS
 *   1. Subprocesses as coroutines see them: coro_process_spawn starts
 *      `/bin/sh -c COMMAND` with stdin on /dev/null and stdout and stderr
 *      on pipes; the pipe ends are ordinary coro descriptors, read here
 *      line by line with a coro_stream by two relay coroutines per
 *      command, which print each line with the command's number:
 *          [2]: a line the command wrote to stdout
 *          [2]! a line it wrote to stderr
 *   2. Bounded concurrency: a semaphore of N permits, taken before each
 *      command's coroutine is spawned and given back when it ends, so at
 *      most N commands run at once however many there are (as in
 *      port_scanner).
 *   3. A deadline per command: coro_process_wait runs under
 *      coro_timeout(limit). ETIMEDOUT leaves the child running; the
 *      runner then sends SIGTERM to the command's process group
 *      (CORO_PROCESS_PGROUP: the shell and what it started), waits a
 *      second more, then SIGKILL. That cleanup runs under coro_shield so
 *      that Ctrl-C cannot cut it short.
 *   4. Graceful interruption: a coroutine waits for SIGINT or SIGTERM
 *      (coro_signal_wait) and cancels the main coroutine, whose wait for
 *      its task group of runners then cancels them (no child outlives its
 *      group); each one stops its command the same way and reports
 *      "interrupted". (The
 *      commands lead their own process groups, so the terminal's Ctrl-C
 *      reaches only this program, which decides.)
 *   5. The exit statuses, decoded from the waitpid status with
 *      WIFEXITED / WEXITSTATUS / WIFSIGNALED / WTERMSIG, in a summary in
 *      input order; the program exits 1 if any command failed.
 *
 * HOW TO RUN IT
 *   parallel_run [-j N] [-t SECONDS] [COMMAND ...]
 *     -j N        at most N commands at once (default 4)
 *     -t SECONDS  each command's deadline (default 10; fractions allowed)
 *   Commands come from the arguments, each one shell command line, or,
 *   without any, from standard input, one per line (empty lines and
 *   lines starting with # are skipped):
 *     printf 'echo one\nsleep 1; echo two\nexit 3\n' | parallel_run -j 2 -t 5
 *
 * WHAT TO NOTICE IN THE OUTPUT
 *   - Lines of different commands interleave as they are written: each
 *     relay prints a whole line at a time.
 *   - A command that outlives its deadline is killed and reported as
 *     "timed out"; one that left a background process holding its output
 *     open past the deadline has its output cut (and says so).
 *   - The summary gives each command's end and how long it ran. */
#include <coro.h>

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define GRACE CORO_SEC /* between SIGTERM and SIGKILL */
#define LINE_MAX_SHOWN 1024

enum { PENDING, EXITED, TIMED_OUT, INTERRUPTED, NOT_STARTED };

typedef struct job {
    int id;                  /* 1-based, in input order */
    char *cmd;
    int state;               /* PENDING ... NOT_STARTED */
    int status;              /* waitpid status once EXITED (or killed) */
    int err;                 /* errno of a spawn that failed */
    int cut;                 /* output still held open at the deadline */
    int64_t ran;             /* ns from spawn to end */
} job_t;

/* One relay: a pipe's lines to our stdout, tagged. */
typedef struct relay {
    int id;
    char mark;               /* ':' stdout, '!' stderr */
    int fd;
    int64_t until;           /* give up reading then */
    int cut;
} relay_t;

static int jobs_at_once = 4;
static int64_t limit = 10 * CORO_SEC;
static coro_sem_t slots;
static coro_group_t *runners;
static int stopping;         /* set on SIGINT/SIGTERM: start nothing new */

static int relay_main(void *arg)
{
    relay_t *r = arg;
    coro_set_deadline(r->until);
    coro_stream_t *s = coro_stream_new(r->fd, 4096);
    if (!s)
        return 1;
    char line[LINE_MAX_SHOWN];
    ssize_t n;
    while ((n = coro_stream_readline(s, line, sizeof line)) > 0)
        printf("[%d]%c %s%s", r->id, r->mark, line, line[n - 1] == '\n' ? "" : "\n");
    if (n < 0)
        r->cut = 1; /* the deadline passed with the pipe still open */
    coro_stream_free(s);
    return 0;
}

/* Stop the command: SIGTERM to its group, then SIGKILL after GRACE.
 * Shielded, so that a cancellation cannot leave it half done. */
static void stop(coro_process_t *p, job_t *j)
{
    int old = coro_shield(1);
    int64_t saved = coro_set_deadline(CORO_NEVER);
    coro_process_kill_group(p, SIGTERM);
    coro_timeout(GRACE);
    if (coro_process_wait(p, &j->status) != 0) {
        coro_set_deadline(CORO_NEVER);
        coro_process_kill_group(p, SIGKILL);
        coro_process_wait(p, &j->status);
    }
    coro_set_deadline(saved);
    coro_shield(old);
}

static int run_job(void *arg)
{
    job_t *j = arg;
    const char *argv[] = { "/bin/sh", "-c", j->cmd, NULL };
    coro_process_opts_t opts = {
        .stdio = { CORO_STDIO_NULL, CORO_STDIO_PIPE, CORO_STDIO_PIPE },
        .flags = CORO_PROCESS_PGROUP,
    };
    int64_t t0 = coro_now();
    coro_process_t *p = coro_process_spawn(argv, &opts);
    if (!p) {
        j->err = errno;
        j->state = errno == ECANCELED ? INTERRUPTED : NOT_STARTED;
        coro_sem_release(&slots);
        return 1;
    }
    /* The relays may read a little past the deadline: what the command
     * wrote before it was stopped. */
    relay_t out = { j->id, ':', coro_process_fd(p, 1), t0 + limit + 2 * GRACE, 0 };
    relay_t err = { j->id, '!', coro_process_fd(p, 2), t0 + limit + 2 * GRACE, 0 };
    coro_t *ro = coro_spawn(relay_main, &out);
    coro_t *re = coro_spawn(relay_main, &err);

    int64_t saved = coro_timeout(limit);
    int rc = coro_process_wait(p, &j->status);
    int e = errno;
    coro_set_deadline(saved);
    if (rc == 0) {
        j->state = EXITED;
    } else {
        j->state = e == ETIMEDOUT ? TIMED_OUT : INTERRUPTED;
        stop(p, j);
    }
    j->ran = coro_now() - t0;

    /* The relays end at end of file (or their deadline): wait for them
     * under the shield too, since they use p's pipes. */
    int old = coro_shield(1);
    if (ro)
        coro_join(ro, NULL);
    if (re)
        coro_join(re, NULL);
    coro_shield(old);
    j->cut = out.cut || err.cut;
    coro_process_free(p);
    coro_sem_release(&slots);
    return j->state == EXITED && WIFEXITED(j->status) && WEXITSTATUS(j->status) == 0 ? 0 : 1;
}

/* SIGINT/SIGTERM: stop everything, once, by cancelling the main
 * coroutine (arg): its read of the next command or its wait for a permit
 * fails, and its coro_group_wait, cancelled, cancels the runners and
 * waits for them to stop their commands. */
static int watch_signals(void *arg)
{
    coro_t *main_coro = arg;
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    int sig = coro_signal_wait(&set);
    if (sig < 0)
        return 0; /* cancelled: every command is done */
    fprintf(stderr, "parallel_run: %s, stopping the commands\n", strsignal(sig));
    stopping = 1;
    coro_cancel(main_coro);
    return 0;
}

/* ---- the commands ---------------------------------------------------------------- */

/* Start j once a permit is free (parks while N commands run). -1 when
 * stopping. */
static int start(job_t *j)
{
    if (coro_sem_acquire(&slots) != 0)
        return -1;
    if (stopping) {
        coro_sem_release(&slots);
        return -1;
    }
    if (!coro_group_spawn(runners, run_job, j)) {
        j->err = errno;
        j->state = NOT_STARTED;
        coro_sem_release(&slots);
    }
    return 0;
}

static const char *describe(const job_t *j, char *buf, size_t size)
{
    switch (j->state) {
    case PENDING: return "not run (interrupted before it started)";
    case NOT_STARTED: snprintf(buf, size, "could not start: %s", strerror(j->err)); return buf;
    case TIMED_OUT: snprintf(buf, size, "timed out after %.1f s, stopped", (double)limit / 1e9); return buf;
    case INTERRUPTED: return "interrupted, stopped";
    default: break;
    }
    if (WIFEXITED(j->status))
        snprintf(buf, size, "exit %d", WEXITSTATUS(j->status));
    else if (WIFSIGNALED(j->status))
        snprintf(buf, size, "killed by signal %d (%s)", WTERMSIG(j->status),
                 strsignal(WTERMSIG(j->status)));
    else
        snprintf(buf, size, "status 0x%x", (unsigned)j->status);
    return buf;
}

static int failed(const job_t *j)
{
    return j->state != EXITED || !WIFEXITED(j->status) || WEXITSTATUS(j->status) != 0;
}

typedef struct args {
    int argc;
    char **argv;
} args_t;

static int usage(void)
{
    fprintf(stderr, "usage: parallel_run [-j N] [-t SECONDS] [COMMAND ...]\n"
                    "       (without COMMANDs: one per line on standard input)\n");
    return 2;
}

/* Jobs live in blocks that never move, so a runner's pointer stays good
 * while more commands are read. */
#define BLOCK 64
typedef struct block {
    struct block *next;
    job_t jobs[BLOCK];
} block_t;

static block_t *first_block, *last_block;
static int njobs;

static job_t *new_job(const char *cmd, size_t len)
{
    if (njobs % BLOCK == 0) {
        block_t *b = calloc(1, sizeof *b);
        if (!b)
            return NULL;
        if (last_block)
            last_block->next = b;
        else
            first_block = b;
        last_block = b;
    }
    job_t *j = &last_block->jobs[njobs % BLOCK];
    j->id = ++njobs;
    j->state = PENDING;
    j->cmd = malloc(len + 1);
    if (!j->cmd)
        return NULL;
    memcpy(j->cmd, cmd, len);
    j->cmd[len] = '\0';
    return j;
}

/* Commands from standard input, started as they are read. */
static int read_commands(void)
{
    coro_stream_t *in = coro_stream_new(STDIN_FILENO, 4096);
    if (!in)
        return -1;
    char line[4096];
    ssize_t n;
    while (!stopping && (n = coro_stream_readline(in, line, sizeof line)) > 0) {
        size_t len = (size_t)n;
        if (line[len - 1] != '\n' && len == sizeof line - 1) {
            fprintf(stderr, "parallel_run: a command line longer than %zu bytes\n", len);
            coro_stream_free(in);
            return -1;
        }
        while (len && (line[len - 1] == '\n' || line[len - 1] == '\r'))
            len--;
        if (len == 0 || line[0] == '#')
            continue;
        job_t *j = new_job(line, len);
        if (!j || start(j) != 0)
            break;
    }
    coro_stream_free(in);
    return 0;
}

static int body(void *arg)
{
    args_t *a = arg;
    coro_sem_init(&slots, jobs_at_once);
    runners = coro_group_new(CORO_GROUP_COLLECT);
    if (!runners) {
        perror("parallel_run: coro_group_new");
        return 2;
    }
    coro_t *watcher = coro_spawn(watch_signals, coro_self());

    int64_t t0 = coro_now();
    if (a->argc > 0) {
        for (int i = 0; i < a->argc && !stopping; i++) {
            job_t *j = new_job(a->argv[i], strlen(a->argv[i]));
            if (!j || start(j) != 0)
                break;
        }
    } else if (read_commands() != 0) {
        stopping = 1;
    }
    coro_group_wait(runners); /* interrupted: stops the runners first */
    coro_shield(1);           /* what is left must not be cut short */
    coro_group_free(runners);
    if (watcher) {
        coro_cancel(watcher);
        coro_join(watcher, NULL);
    }

    int bad = 0;
    printf("--- %d command%s in %.2f s, at most %d at once\n", njobs, njobs == 1 ? "" : "s",
           (double)(coro_now() - t0) / 1e9, jobs_at_once);
    for (block_t *b = first_block; b; b = b->next)
        for (int i = 0; i < BLOCK && b->jobs[i].id; i++) {
            job_t *j = &b->jobs[i];
            char why[128];
            printf("[%d] %-40s %s (%.0f ms)%s\n", j->id, describe(j, why, sizeof why),
                   j->cmd, (double)j->ran / 1e6,
                   j->cut ? ", output cut: still held open by something it started" : "");
            bad += failed(j);
        }
    printf("--- %d ok, %d failed\n", njobs - bad, bad);
    return bad ? 1 : 0;
}

int main(int argc, char **argv)
{
    int opt;
    while ((opt = getopt(argc, argv, "j:t:h")) != -1) {
        switch (opt) {
        case 'j':
            jobs_at_once = atoi(optarg);
            if (jobs_at_once < 1)
                return usage();
            break;
        case 't': {
            char *end;
            double s = strtod(optarg, &end);
            if (*end || !(s > 0) || s > 1e6)
                return usage();
            limit = (int64_t)(s * 1e9);
            break;
        }
        default:
            return usage();
        }
    }
    setvbuf(stdout, NULL, _IOLBF, 0); /* whole lines, as they come */
    /* Reading standard input with coro makes it non-blocking, which a
     * terminal shares with the shell: put its flags back afterwards. */
    int stdin_flags = fcntl(STDIN_FILENO, F_GETFL);
    args_t a = { argc - optind, argv + optind };
    int rc = coro_main(body, &a);
    if (stdin_flags >= 0)
        fcntl(STDIN_FILENO, F_SETFL, stdin_flags);
    for (block_t *b = first_block; b;) {
        block_t *next = b->next;
        for (int i = 0; i < BLOCK; i++)
            free(b->jobs[i].cmd);
        free(b);
        b = next;
    }
    return rc < 0 ? 2 : rc;
}
