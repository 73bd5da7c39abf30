/* prime_sieve.c: the concurrent prime sieve, with generators.
 *
 * WHAT IT SHOWS
 *   The classic chain of filters (Doug McIlroy's, made famous by Go's
 *   tour): a generator counts 2, 3, 4, ...; the first number it gives is
 *   prime. Put a filter behind it that drops the multiples of that prime;
 *   the first number *that* gives is the next prime; put a filter for it
 *   behind, and so on:
 *
 *     count 2,3,4,... -> [drop 2k] -> [drop 3k] -> [drop 5k] -> ... -> main
 *
 *   Each stage is a generator (coro_gen_new): its function runs as a
 *   coroutine of its own and hands values out one at a time with
 *   coro_gen_yield(); a filter pulls from the stage before it with
 *   coro_gen_next(). Nothing runs ahead: a value is computed only when the
 *   end of the chain asks for one (a pull model, like Python's
 *   generators, where a channel pipeline would push).
 *
 *   The counter never ends. coro_gen_free() is how an endless generator
 *   is stopped: its parked coro_gen_yield() fails with ECANCELED, the
 *   function returns, and the free waits for that before it releases the
 *   memory. Main frees the chain from its end.
 *
 * WHY IT MATTERS
 *   A generator turns "produce a sequence" into a plain loop with a yield
 *   in it, keeping its state in local variables instead of an explicit
 *   iterator struct. coro_gen_next() switches straight to the producer and
 *   back, without going through the run queue, so a value costs two
 *   context switches: cheap enough for a chain of twenty stages.
 *
 * WHAT TO NOTICE IN THE OUTPUT
 *   - The first 20 primes, checked against a table.
 *   - The counter went exactly up to 71, the 20th prime, and no further:
 *     nothing is computed before it is asked for.
 *   - The context switches the whole chain took: each number is passed
 *     along by every filter it survives, two switches per hand-off.
 *   The program exits non-zero if a prime is wrong or anything fails. */
#include <coro.h>

#include <errno.h>
#include <stdio.h>
#include <string.h>

#define PRIMES 20

static int failures;

#define CHECK(cond, ...)                                                    \
    do {                                                                    \
        if (!(cond)) {                                                      \
            fprintf(stderr, "prime_sieve: unexpected: " __VA_ARGS__);       \
            fputc('\n', stderr);                                            \
            failures++;                                                     \
        }                                                                   \
    } while (0)

static const int expected[PRIMES] = { 2,  3,  5,  7,  11, 13, 17, 19, 23, 29,
                                      31, 37, 41, 43, 47, 53, 59, 61, 67, 71 };

/* 2, 3, 4, ... until the generator is freed. *last is the latest value
 * handed out. */
static int count_from_2(coro_gen_t *g, void *arg)
{
    int *last = arg;
    for (int n = 2;; n++) {
        *last = n;
        if (coro_gen_yield(g, &n) != 0)
            return errno == ECANCELED ? 0 : 1; /* freed: the normal way out */
    }
}

/* One filter: pass on what `in` gives, except the multiples of `prime`. */
struct filter {
    coro_gen_t *in;
    int prime;
};

static int drop_multiples(coro_gen_t *g, void *arg)
{
    struct filter *f = arg;
    int n;
    for (;;) {
        if (coro_gen_next(f->in, &n) != 0)
            return 1; /* the stage before ended: not in this program */
        if (n % f->prime == 0)
            continue;
        if (coro_gen_yield(g, &n) != 0)
            return errno == ECANCELED ? 0 : 1;
    }
}

static int body(void *arg)
{
    (void)arg;
    /* chain[0] is the counter, chain[i] the filter for the i-th prime. */
    coro_gen_t *chain[PRIMES];
    struct filter filters[PRIMES];
    int stages = 0, found[PRIMES], nfound = 0, last = 0;

    coro_stats_t st0, st1;
    coro_stats(&st0);
    chain[0] = coro_gen_new(count_from_2, &last, sizeof(int));
    if (!chain[0]) {
        fprintf(stderr, "prime_sieve: coro_gen_new: %s\n", strerror(errno));
        return 1;
    }
    stages = 1;
    printf("the first %d primes:", PRIMES);
    while (nfound < PRIMES) {
        int p;
        /* The end of the chain gives the next prime. */
        if (coro_gen_next(chain[stages - 1], &p) != 0) {
            fprintf(stderr, "\nprime_sieve: coro_gen_next: %s\n", strerror(errno));
            failures++;
            break;
        }
        found[nfound++] = p;
        printf(" %d", p);
        if (nfound == PRIMES)
            break; /* no need for a filter behind the last one */
        filters[stages] = (struct filter){ chain[stages - 1], p };
        chain[stages] = coro_gen_new(drop_multiples, &filters[stages], sizeof(int));
        if (!chain[stages]) {
            fprintf(stderr, "\nprime_sieve: coro_gen_new: %s\n", strerror(errno));
            failures++;
            break;
        }
        stages++;
    }
    printf("\n");
    coro_stats(&st1);
    printf("%d stages; the counter produced 2..%d; %llu context switches\n", stages, last,
           (unsigned long long)(st1.switches - st0.switches));

    /* Stop the chain from its end: each free cancels a producer parked in
     * coro_gen_yield and waits for it to return. */
    for (int i = stages - 1; i >= 0; i--)
        coro_gen_free(chain[i]);

    CHECK(nfound == PRIMES, "found %d primes", nfound);
    for (int i = 0; i < nfound; i++)
        CHECK(found[i] == expected[i], "prime #%d is %d, expected %d", i + 1, found[i],
              expected[i]);
    /* Pull, not push: the counter went no further than the last prime. */
    CHECK(last == expected[PRIMES - 1], "the counter went up to %d", last);
    return failures ? 1 : 0;
}

int main(void)
{
    setvbuf(stdout, NULL, _IOLBF, 0); /* keep stdout and stderr in order */
    int rc = coro_main(body, NULL);
    if (rc < 0) {
        fprintf(stderr, "prime_sieve: coro_main: %s\n", strerror(errno));
        return 1;
    }
    return rc == 0 ? 0 : 1;
}
