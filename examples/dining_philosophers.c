/* dining_philosophers.c: a lock-order deadlock, found by the runtime, and
 * its fix.
 *
 * WHAT IT SHOWS
 *   Five philosophers sit at a round table with one fork (a coro_mutex_t)
 *   between each pair of neighbours. To eat, philosopher i needs fork i on
 *   the left and fork (i + 1) % 5 on the right.
 *   1. Each takes the left fork, pauses (coro_yield(), standing for any
 *      blocking call that lets the others run), then takes the right one.
 *      By the time anyone reaches for a right fork, every fork is held by
 *      the philosopher to its right: a cycle of waits, 0 -> 1 -> 2 -> 3 ->
 *      4 -> 0. Nobody can ever eat. The scheduler sees that every
 *      coroutine is parked and nothing (no timer, no I/O) can wake one; it
 *      writes a dump to stderr in which each philosopher is parked on
 *      "mutex <address>" (the address of its right fork, printed here
 *      first so you can match them up), cancels everyone so each unwinds
 *      (the pending coro_mutex_lock fails with ECANCELED, and the
 *      philosopher puts its left fork back), and coro_main returns
 *      -1/EDEADLK.
 *   2. The fix is a lock order: every philosopher takes the lower-numbered
 *      of its two forks first. Philosopher 4 now reaches for fork 0 before
 *      fork 4. A cycle of waits would need someone who holds a higher fork
 *      and waits for a lower one, and nobody ever does that, so no cycle
 *      can form. The same yield sits between the two locks, and every
 *      philosopher eats three meals.
 *
 * WHY IT MATTERS
 *   Taking two locks in different orders in different places is the
 *   classic deadlock, and in a threaded program it shows as a hang you
 *   debug with gdb on every thread. A single-threaded scheduler can prove
 *   the deadlock and name who waits on what, like Go's "all goroutines are
 *   asleep - deadlock!". The cure is the same everywhere: a global order
 *   on locks, respected by everyone who takes more than one.
 *
 * WHAT TO NOTICE IN THE OUTPUT
 *   - Run 1: the dump on stderr (copied through by this program after it
 *     checked it), one "philosopher N" line each, parked on "mutex" with
 *     the address of fork N+1; then coro_main -> -1 (EDEADLK).
 *   - Run 2: 15 meals, no two neighbours ever eating at once, coro_main
 *     -> 0.
 *   The program exits 0 only when run 1 deadlocks exactly like that and
 *   run 2 completes. */
#include <coro.h>

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#define N 5
#define MEALS 3

static int failures;

#define CHECK(cond, ...)                                                       \
    do {                                                                       \
        if (!(cond)) {                                                         \
            fprintf(stderr, "dining_philosophers: unexpected: " __VA_ARGS__);  \
            fputc('\n', stderr);                                               \
            failures++;                                                        \
        }                                                                      \
    } while (0)

struct table {
    coro_mutex_t forks[N];
    int ordered;        /* take the lower-numbered fork first */
    int eating[N];      /* philosopher i is eating now */
    int meals[N];
    int clashes;        /* a neighbour was eating at the same time */
    int err[N];         /* how philosopher i's lock failed, or 0 */
    int err_fork[N];    /* the fork it was reaching for */
    int wait_err;       /* how main's coro_group_wait failed, or 0 */
};

struct seat {
    struct table *t;
    int id;
};

static int philosopher(void *arg)
{
    struct seat *s = arg;
    struct table *t = s->t;
    int i = s->id, left = i, right = (i + 1) % N;
    int first = left, second = right;
    if (t->ordered && first > second) {
        first = right;
        second = left;
    }
    for (int meal = 0; meal < MEALS; meal++) {
        if (coro_mutex_lock(&t->forks[first]) != 0) {
            t->err[i] = errno;
            t->err_fork[i] = first;
            return 1;
        }
        coro_yield(); /* the others get to pick up their first fork too */
        if (coro_mutex_lock(&t->forks[second]) != 0) {
            /* (Printed by main later: stderr is being captured now, and
             * the dump should come first.) */
            t->err[i] = errno;
            t->err_fork[i] = second;
            if (coro_mutex_unlock(&t->forks[first]) != 0) /* put it back */
                t->err[i] = errno;
            return 1;
        }
        if (t->eating[(i + N - 1) % N] || t->eating[(i + 1) % N])
            t->clashes++;
        t->eating[i] = 1;
        t->meals[i]++;
        coro_yield(); /* eating takes a while */
        t->eating[i] = 0;
        if (coro_mutex_unlock(&t->forks[second]) != 0 ||
            coro_mutex_unlock(&t->forks[first]) != 0) {
            t->err[i] = errno;
            fprintf(stderr, "dining_philosophers: coro_mutex_unlock: %s\n", strerror(errno));
            return 1;
        }
        coro_yield(); /* thinking */
    }
    return 0;
}

static int dinner(void *arg)
{
    struct table *t = arg;
    struct seat seats[N];
    coro_group_t *g = coro_group_new(CORO_GROUP_COLLECT);
    if (!g) {
        fprintf(stderr, "dining_philosophers: coro_group_new: %s\n", strerror(errno));
        return 1;
    }
    for (int i = 0; i < N; i++) {
        char name[32];
        snprintf(name, sizeof name, "philosopher %d", i);
        coro_opts_t o = { .name = name };
        seats[i] = (struct seat){ t, i };
        if (!coro_group_spawn_opts(g, philosopher, &seats[i], &o)) {
            fprintf(stderr, "dining_philosophers: coro_group_spawn_opts: %s\n",
                    strerror(errno));
            coro_group_free(g); /* cancels and waits for the ones started */
            return 1;
        }
    }
    /* In run 1 this wait is where main is parked when the deadlock is
     * found; it fails with ECANCELED once the philosophers have unwound. */
    int rc = coro_group_wait(g);
    if (rc == -1)
        t->wait_err = errno;
    coro_group_free(g);
    return rc == 0 ? 0 : 1;
}

static void init_table(struct table *t, int ordered)
{
    memset(t, 0, sizeof *t);
    t->ordered = ordered;
    for (int i = 0; i < N; i++)
        coro_mutex_init(&t->forks[i]);
}

/* Run 1, with stderr (where the dump goes) captured in a temporary file so
 * that it can be checked; it is copied to the real stderr afterwards. */
static void run_deadlock(void)
{
    struct table t;
    init_table(&t, 0);
    printf("1. everyone takes the left fork first\n   forks:");
    for (int i = 0; i < N; i++)
        printf(" %d=%p", i, (void *)&t.forks[i]);
    printf("\n");

    FILE *cap = tmpfile();
    int saved = cap ? dup(STDERR_FILENO) : -1;
    if (!cap || saved < 0) {
        perror("dining_philosophers: capturing stderr");
        failures++;
        if (cap)
            fclose(cap);
        return;
    }
    fflush(stderr);
    if (dup2(fileno(cap), STDERR_FILENO) < 0) {
        perror("dining_philosophers: dup2");
        failures++;
        close(saved);
        fclose(cap);
        return;
    }
    int rc = coro_main(dinner, &t);
    int err = errno;
    fflush(stderr);
    if (dup2(saved, STDERR_FILENO) < 0) {
        /* stderr is lost; say so on stdout */
        printf("dining_philosophers: restoring stderr: %s\n", strerror(errno));
        failures++;
    }
    close(saved);

    /* Copy the dump through and check each philosopher's line: parked on
     * "mutex <its right fork>". */
    int parked_on_right[N] = { 0 }, lines = 0;
    char line[512];
    rewind(cap);
    while (fgets(line, sizeof line, cap)) {
        fputs(line, stderr);
        int id;
        void *p;
        const char *who = strstr(line, "\"philosopher ");
        const char *what = strstr(line, "mutex ");
        if (who && sscanf(who, "\"philosopher %d\"", &id) == 1 && id >= 0 && id < N) {
            lines++;
            if (what && sscanf(what, "mutex %p", &p) == 1 && p == &t.forks[(id + 1) % N])
                parked_on_right[id] = 1;
        }
    }
    fclose(cap);

    printf("   after the dump, everyone unwound:\n");
    for (int i = 0; i < N; i++)
        printf("     philosopher %d: lock(fork %d) -> %s; put fork %d back\n", i,
               t.err_fork[i], t.err[i] ? strerror(t.err[i]) : "ok?", i);
    printf("     main: coro_group_wait -> %s, once all five had ended\n",
           t.wait_err ? strerror(t.wait_err) : "ok?");
    printf("   coro_main -> %d (%s)\n", rc, rc == -1 ? strerror(err) : "no deadlock?");
    CHECK(rc == -1 && err == EDEADLK, "coro_main returned %d (%s), expected -1/EDEADLK", rc,
          strerror(err));
    CHECK(lines == N, "the dump has %d philosopher lines, expected %d", lines, N);
    for (int i = 0; i < N; i++) {
        CHECK(parked_on_right[i], "the dump does not show philosopher %d parked on "
                                  "\"mutex %p\" (fork %d)",
              i, (void *)&t.forks[(i + 1) % N], (i + 1) % N);
        CHECK(t.err[i] == ECANCELED && t.err_fork[i] == (i + 1) % N,
              "philosopher %d ended with \"%s\" on fork %d, expected ECANCELED on fork %d", i,
              strerror(t.err[i]), t.err_fork[i], (i + 1) % N);
        CHECK(t.meals[i] == 0, "philosopher %d ate", i);
    }
    CHECK(t.wait_err == ECANCELED, "main's wait ended with \"%s\"", strerror(t.wait_err));
    int all = lines == N;
    for (int i = 0; i < N; i++)
        all = all && parked_on_right[i];
    printf("   the dump showed each philosopher parked on \"mutex\" = its right fork: %s\n",
           all ? "yes" : "NO");
}

static void run_ordered(void)
{
    struct table t;
    init_table(&t, 1);
    printf("2. everyone takes the lower-numbered fork first (philosopher 4: fork 0, "
           "then fork 4)\n");
    int rc = coro_main(dinner, &t);
    int err = errno;
    int total = 0;
    printf("   meals:");
    for (int i = 0; i < N; i++) {
        printf(" %d", t.meals[i]);
        total += t.meals[i];
    }
    printf(" (%d in all); neighbours eating at once: %d\n", total, t.clashes);
    printf("   coro_main -> %d%s%s\n", rc, rc == -1 ? " " : "", rc == -1 ? strerror(err) : "");
    CHECK(rc == 0, "coro_main returned %d (%s)", rc, rc == -1 ? strerror(err) : "a failure");
    CHECK(total == N * MEALS, "%d meals, expected %d", total, N * MEALS);
    CHECK(t.clashes == 0, "neighbours ate at the same time %d times", t.clashes);
}

int main(void)
{
    setvbuf(stdout, NULL, _IOLBF, 0); /* keep stdout and stderr in order */
    run_deadlock();
    run_ordered();
    return failures ? 1 : 0;
}
