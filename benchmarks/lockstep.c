/* Lock-step SMTP client for benchmarks/latency.py: one connection, one transaction at a
 * time (MAIL, RCPT, DATA, message, each waiting for its reply), printing each
 * transaction's round-trip time in nanoseconds. A C client keeps the client's own cost
 * out of the server's latency.
 *
 *   lockstep HOST PORT COUNT [WARMUP]
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static char buf[65536];
static size_t have;

/* Read until a complete final reply line ("ddd " ... CRLF) is buffered; drop it. */
static void reply(int fd) {
    for (;;) {
        char *start = buf;
        char *end;
        while ((end = memchr(start, '\n', have - (size_t)(start - buf))) != NULL) {
            int final = end - start >= 4 && start[3] == ' ';
            start = end + 1;
            if (final) {
                have -= (size_t)(start - buf);
                memmove(buf, start, have);
                return;
            }
        }
        ssize_t n = read(fd, buf + have, sizeof buf - have);
        if (n <= 0) {
            fprintf(stderr, "lockstep: connection closed\n");
            exit(1);
        }
        have += (size_t)n;
    }
}

static void command(int fd, const char *text, size_t len) {
    if (write(fd, text, len) != (ssize_t)len) {
        perror("lockstep: write");
        exit(1);
    }
    reply(fd);
}

static double now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

int main(int argc, char **argv) {
    if (argc < 4) {
        fprintf(stderr, "usage: lockstep HOST PORT COUNT [WARMUP]\n");
        return 2;
    }
    int count = atoi(argv[3]);
    int warmup = argc > 4 ? atoi(argv[4]) : 100;
    struct sockaddr_in sin;
    memset(&sin, 0, sizeof sin);
    sin.sin_family = AF_INET;
    sin.sin_port = htons((unsigned short)atoi(argv[2]));
    if (inet_pton(AF_INET, argv[1], &sin.sin_addr) != 1) {
        fprintf(stderr, "lockstep: bad address %s\n", argv[1]);
        return 2;
    }
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (connect(fd, (struct sockaddr *)&sin, sizeof sin) < 0) {
        perror("lockstep: connect");
        return 1;
    }
    reply(fd);
    command(fd, "EHLO lockstep\r\n", 15);
    static const char mail[] = "MAIL FROM:<sender@example.com>\r\n";
    static const char rcpt[] = "RCPT TO:<rcpt@example.com>\r\n";
    static const char data[] = "DATA\r\n";
    static char message[1100];
    int len = snprintf(message, sizeof message, "Subject: lock-step\r\n\r\n");
    while (len < 1000) message[len++] = 'x';
    len += snprintf(message + len, sizeof message - (size_t)len, "\r\n.\r\n");
    for (int i = 0; i < warmup + count; i++) {
        double t0 = now_ns();
        command(fd, mail, sizeof mail - 1);
        command(fd, rcpt, sizeof rcpt - 1);
        command(fd, data, sizeof data - 1);
        command(fd, message, (size_t)len);
        double t1 = now_ns();
        if (i >= warmup) printf("%.0f\n", t1 - t0);
    }
    command(fd, "QUIT\r\n", 6);
    close(fd);
    return 0;
}
