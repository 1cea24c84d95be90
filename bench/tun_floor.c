/* The floor of any TUN forwarder: one thread per direction, each a blocking read() of
 * one TUN device and a write() of the same bytes to the other. No model, no clock, no
 * queue, no record: what a forwarder between two TUN devices costs before it decides
 * anything. bench/throughput.py measures TCP bulk through it beside the engine, so the
 * engine's figure can be read against what the TUN design itself allows.
 *
 *     tun_floor CLIENT_FD SERVER_FD      (both TUN fds inherited; runs until killed)
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/prctl.h>
#include <unistd.h>

struct direction {
    int from, to;
};

static void *forward(void *arg) {
    const struct direction *d = arg;
    static __thread unsigned char packet[65536];
    for (;;) {
        ssize_t n = read(d->from, packet, sizeof packet);
        if (n < 0) {
            if (errno == EINTR) continue;
            perror("tun_floor: read");
            exit(1);
        }
        /* a full peer queue drops the packet, as the engine's writer does */
        if (write(d->to, packet, (size_t)n) < 0 && errno != EAGAIN && errno != ENOBUFS) {
            perror("tun_floor: write");
            exit(1);
        }
    }
    return NULL;
}

static int blocking(const char *text) {
    char *end;
    long fd = strtol(text, &end, 10);
    if (*end || fd < 0 || fcntl((int)fd, F_SETFL, fcntl((int)fd, F_GETFL) & ~O_NONBLOCK) < 0) {
        fprintf(stderr, "tun_floor: '%s' is not an open fd\n", text);
        exit(2);
    }
    return (int)fd;
}

int main(int argc, char **argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: tun_floor CLIENT_FD SERVER_FD\n");
        return 2;
    }
    /* dies with the benchmark that started it, however that ends */
    if (prctl(PR_SET_PDEATHSIG, SIGKILL) < 0 || getppid() == 1) return 1;
    struct direction up = {blocking(argv[1]), blocking(argv[2])};
    struct direction down = {up.to, up.from};
    pthread_t thread;
    if (pthread_create(&thread, NULL, forward, &down)) {
        perror("tun_floor: pthread_create");
        return 1;
    }
    forward(&up);
    return 0;
}
