/* Timer lateness probe: how late does this machine wake a thread that sleeps to an
 * absolute deadline? The reference for the impairment engine's own lateness.
 *
 *     gcc -O2 -o lateness_probe bench/lateness_probe.c
 *     ./lateness_probe SECONDS [PERIOD_US]
 *
 * Sleeps to the deadlines start + k x PERIOD_US (1000 us by default) with
 * clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME) for SECONDS and records, for every
 * deadline, how late it woke (clock_gettime(CLOCK_MONOTONIC) after the sleep minus the
 * deadline). The schedule is fixed, as the engine's is: after a stall the deadlines it
 * missed are still taken, each late by what is left of the stall (none is skipped).
 * The timer slack is set to 1 ns (PR_SET_TIMERSLACK), as the engine sets its own, so
 * both ask the kernel for the same precision. Scheduling is the default (SCHED_OTHER).
 *
 * Prints one JSON object: samples, period_us, seconds, and lateness mean / p50 / p99 /
 * max in milliseconds (percentiles interpolated linearly between the closest ranks, as
 * numpy.percentile does by default). Exit status 2 on bad arguments, 1 on a failure.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <time.h>

static int64_t ns_of(const struct timespec *t) {
    return (int64_t)t->tv_sec * 1000000000LL + t->tv_nsec;
}

static struct timespec timespec_of(int64_t ns) {
    struct timespec t = {(time_t)(ns / 1000000000LL), (long)(ns % 1000000000LL)};
    return t;
}

static int compare(const void *a, const void *b) {
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

/* numpy.percentile's default ("linear"): between the closest ranks of the sorted data */
static double percentile(const int64_t *sorted, size_t n, double p) {
    double position = p / 100.0 * (double)(n - 1);
    size_t low = (size_t)position;
    size_t high = low + 1 < n ? low + 1 : low;
    double fraction = position - (double)low;
    return (double)sorted[low] + fraction * (double)(sorted[high] - sorted[low]);
}

int main(int argc, char **argv) {
    if (argc < 2 || argc > 3) {
        fprintf(stderr, "usage: %s SECONDS [PERIOD_US]\n", argv[0]);
        return 2;
    }
    double seconds = strtod(argv[1], NULL);
    long period_us = argc == 3 ? strtol(argv[2], NULL, 10) : 1000;
    if (!(seconds > 0 && seconds <= 600) || period_us < 10 || period_us > 1000000) {
        fprintf(stderr, "%s: SECONDS in (0, 600], PERIOD_US in [10, 1000000]\n", argv[0]);
        return 2;
    }
    int64_t period_ns = (int64_t)period_us * 1000;
    size_t n = (size_t)(seconds * 1e9 / (double)period_ns);
    if (n == 0) n = 1;
    int64_t *late = malloc(n * sizeof *late);
    if (late == NULL) {
        perror("malloc");
        return 1;
    }
    if (prctl(PR_SET_TIMERSLACK, 1UL, 0, 0, 0) != 0) perror("prctl(PR_SET_TIMERSLACK)");

    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    int64_t start = ns_of(&now);
    for (size_t k = 0; k < n; k++) {
        int64_t deadline = start + (int64_t)(k + 1) * period_ns;
        struct timespec at = timespec_of(deadline);
        int rc;
        while ((rc = clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &at, NULL)) == EINTR) {
        }
        if (rc != 0) {
            fprintf(stderr, "clock_nanosleep: %s\n", strerror(rc));
            free(late);
            return 1;
        }
        clock_gettime(CLOCK_MONOTONIC, &now);
        late[k] = ns_of(&now) - deadline;
    }

    double sum = 0;
    for (size_t k = 0; k < n; k++) sum += (double)late[k];
    qsort(late, n, sizeof *late, compare);
    printf(
        "{\"samples\": %zu, \"period_us\": %ld, \"seconds\": %.3f, \"mean_ms\": %.6f, "
        "\"p50_ms\": %.6f, \"p99_ms\": %.6f, \"max_ms\": %.6f}\n",
        n, period_us, (double)n * (double)period_ns / 1e9, sum / (double)n / 1e6,
        percentile(late, n, 50) / 1e6, percentile(late, n, 99) / 1e6,
        (double)late[n - 1] / 1e6);
    free(late);
    return 0;
}
