/*
 * echo-floor: how fast can a key's echo be through one relay process that
 * holds both terminals?
 *
 * Build and run (nothing in the test suite uses it):
 *     gcc -O2 -o /tmp/echo-floor scripts/experiments/echo-floor.c -lutil
 *     /tmp/echo-floor
 *
 * Two paths, each key on one right after a key on the other (1000 pairs
 * after 50 of warm-up, 1 ms apart):
 *   bare:   key -> PTY C -> raw cat -> PTY C -> key's echo
 *   relay:  key -> PTY A -> relay -> PTY B -> raw cat -> PTY B -> relay
 *               -> PTY A -> key's echo
 * The relay is a poll loop that copies between the slave of A (a client's
 * terminal, as a daemon would hold it if the client handed it over) and the
 * master of B (the session's PTY). It is the floor of a daemon that writes
 * straight to the client's terminal: no client process, no socket on the
 * key's path. Prints the medians and p99s and their ratios.
 */
#define _GNU_SOURCE
#include <poll.h>
#include <pty.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

enum { KEYS = 1000, WARM_UP = 50 };

static long long now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1000000000LL + t.tv_nsec;
}

static int by_value(const void *a, const void *b) {
    long long x = *(const long long *)a, y = *(const long long *)b;
    return (x > y) - (x < y);
}

/* A PTY whose slave is raw, so a byte goes through unchanged and unechoed. */
static void raw_pty(int *master, int *slave) {
    struct termios t;
    if (openpty(master, slave, NULL, NULL, NULL) != 0) {
        perror("openpty");
        exit(1);
    }
    tcgetattr(*slave, &t);
    cfmakeraw(&t);
    tcsetattr(*slave, TCSANOW, &t);
}

static void cat_forever(int fd) {
    char buf[64];
    for (;;) {
        ssize_t n = read(fd, buf, sizeof buf);
        if (n <= 0 || write(fd, buf, n) != n)
            _exit(0);
    }
}

static void relay_forever(int a, int b) {
    struct pollfd fds[2] = {{a, POLLIN, 0}, {b, POLLIN, 0}};
    char buf[4096];
    for (;;) {
        if (poll(fds, 2, -1) < 0)
            _exit(1);
        for (int i = 0; i < 2; i++) {
            if (!fds[i].revents)
                continue;
            ssize_t n = read(fds[i].fd, buf, sizeof buf);
            if (n <= 0 || write(fds[1 - i].fd, buf, n) != n)
                _exit(0);
        }
    }
}

/* One key written to `master`, timed until its echo is read back. */
static long long echo_ns(int master) {
    char key = 'x';
    long long start = now_ns();
    if (write(master, &key, 1) != 1 || read(master, &key, 1) != 1) {
        perror("echo");
        exit(1);
    }
    return now_ns() - start;
}

static void report(const char *name, long long *samples) {
    qsort(samples, KEYS, sizeof *samples, by_value);
    printf("%s p50 %lld us, p99 %lld us\n", name, samples[KEYS / 2] / 1000,
           samples[KEYS * 99 / 100] / 1000);
}

int main(void) {
    int am, as, bm, bs, cm, cs;
    static long long bare[KEYS], relay[KEYS];
    raw_pty(&am, &as);
    raw_pty(&bm, &bs);
    raw_pty(&cm, &cs);
    pid_t children[3];
    if ((children[0] = fork()) == 0)
        cat_forever(bs);
    if ((children[1] = fork()) == 0)
        cat_forever(cs);
    if ((children[2] = fork()) == 0)
        relay_forever(as, bm);
    for (int i = 0; i < KEYS + WARM_UP; i++) {
        long long b = echo_ns(cm);
        usleep(1000);
        long long r = echo_ns(am);
        usleep(1000);
        if (i >= WARM_UP) {
            bare[i - WARM_UP] = b;
            relay[i - WARM_UP] = r;
        }
    }
    report("bare PTY:            ", bare);
    report("relay between PTYs:  ", relay);
    printf("ratio p50 %.2f, p99 %.2f\n",
           (double)relay[KEYS / 2] / bare[KEYS / 2],
           (double)relay[KEYS * 99 / 100] / bare[KEYS * 99 / 100]);
    for (int i = 0; i < 3; i++)
        kill(children[i], SIGKILL);
    while (wait(NULL) > 0)
        ;
    return 0;
}
