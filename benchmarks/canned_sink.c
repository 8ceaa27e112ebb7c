/* The least an SMTP sink can do, for benchmarks/run.py: one epoll loop that answers every
 * command with a canned reply and stores nothing. What smtp-source achieves against it is
 * the client-bound limit of a scenario on this machine: no sink can be measured above it.
 *
 *   canned_sink PORT [lmtp]
 *
 * Replies: 220 greeting; 354 to DATA; after the end of data 250 (LMTP: one per RCPT);
 * 221 to QUIT (then close); 250 to anything else. Commands may be pipelined.
 */
#define _GNU_SOURCE /* accept4, memmem */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#define MAX_FD 65536

struct conn {
    int in_data;      /* between 354 and the end of data */
    int rcpts;        /* RCPTs of the transaction (LMTP replies) */
    char tail[5];     /* the last octets of data seen (the end may straddle reads) */
    char line[1024];  /* an unfinished command line */
    size_t have;
};

static struct conn *conns[MAX_FD];
static int lmtp;

static void reply(int fd, const char *text, size_t len) {
    if (write(fd, text, len) < 0) { /* the client is gone: the read side sees it */ }
}

/* Consume n octets of DATA; returns how many belonged to it (up to the terminator). */
static size_t data_part(struct conn *c, const char *p, size_t n) {
    char probe[9]; /* the terminator may straddle reads: the last 4 octets, then 4 new */
    size_t k = n < 4 ? n : 4;
    memcpy(probe, c->tail + 1, 4);
    memcpy(probe + 4, p, k);
    char *hit = memmem(probe, 4 + k, "\r\n.\r\n", 5);
    if (hit != NULL) {
        c->in_data = 0;
        return (size_t)(hit - probe) + 5 - 4;
    }
    hit = memmem(p, n, "\r\n.\r\n", 5);
    if (hit != NULL) {
        c->in_data = 0;
        return (size_t)(hit - p) + 5;
    }
    if (n >= 5) {
        memcpy(c->tail, p + n - 5, 5);
    } else {
        memmove(c->tail, c->tail + n, 5 - n);
        memcpy(c->tail + 5 - n, p, n);
    }
    return n;
}

static void command(int fd, struct conn *c, const char *line, size_t len) {
    if (len >= 4 && strncasecmp(line, "DATA", 4) == 0) {
        reply(fd, "354 go\r\n", 8);
        c->in_data = 1;
        memcpy(c->tail, "\0\0\0\r\n", 5); /* a "." right after DATA's CRLF ends it */
    } else if (len >= 4 && strncasecmp(line, "QUIT", 4) == 0) {
        reply(fd, "221 bye\r\n", 9);
        shutdown(fd, SHUT_WR);
    } else {
        if (len >= 4 && strncasecmp(line, "RCPT", 4) == 0) c->rcpts++;
        if (len >= 4 && strncasecmp(line, "MAIL", 4) == 0) c->rcpts = 0;
        reply(fd, "250 ok\r\n", 8);
    }
}

static void readable(int ep, int fd) {
    static char buf[65536];
    static char out[65536];
    struct conn *c = conns[fd];
    ssize_t n = read(fd, buf, sizeof buf);
    if (n <= 0) {
        epoll_ctl(ep, EPOLL_CTL_DEL, fd, NULL);
        close(fd);
        free(c);
        conns[fd] = NULL;
        return;
    }
    size_t pos = 0;
    while (pos < (size_t)n) {
        if (c->in_data) {
            pos += data_part(c, buf + pos, (size_t)n - pos);
            if (!c->in_data) {
                size_t k = 0;
                int count = lmtp && c->rcpts > 0 ? c->rcpts : 1;
                for (int i = 0; i < count && k + 8 <= sizeof out; i++, k += 8)
                    memcpy(out + k, "250 ok\r\n", 8);
                reply(fd, out, k);
            }
            continue;
        }
        char *nl = memchr(buf + pos, '\n', (size_t)n - pos);
        size_t take = nl ? (size_t)(nl - (buf + pos)) + 1 : (size_t)n - pos;
        if (c->have + take < sizeof c->line) {
            memcpy(c->line + c->have, buf + pos, take);
            c->have += take;
        }
        pos += take;
        if (nl) {
            command(fd, c, c->line, c->have);
            c->have = 0;
        }
    }
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: canned_sink PORT [lmtp]\n");
        return 2;
    }
    lmtp = argc > 2 && strcmp(argv[2], "lmtp") == 0;
    int lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    int one = 1;
    setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    setsockopt(lfd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    struct sockaddr_in sin;
    memset(&sin, 0, sizeof sin);
    sin.sin_family = AF_INET;
    sin.sin_port = htons((unsigned short)atoi(argv[1]));
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(lfd, (struct sockaddr *)&sin, sizeof sin) < 0 || listen(lfd, 1000) < 0) {
        perror("canned_sink: listen");
        return 1;
    }
    int ep = epoll_create1(0);
    struct epoll_event ev = {.events = EPOLLIN, .data.fd = lfd};
    epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &ev);
    struct epoll_event events[256];
    for (;;) {
        int ready = epoll_wait(ep, events, 256, -1);
        for (int i = 0; i < ready; i++) {
            int fd = events[i].data.fd;
            if (fd != lfd) {
                readable(ep, fd);
                continue;
            }
            int cfd;
            while ((cfd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK)) >= 0) {
                if (cfd >= MAX_FD) {
                    close(cfd);
                    continue;
                }
                conns[cfd] = calloc(1, sizeof(struct conn));
                struct epoll_event cev = {.events = EPOLLIN, .data.fd = cfd};
                epoll_ctl(ep, EPOLL_CTL_ADD, cfd, &cev);
                reply(cfd, "220 canned ESMTP\r\n", 18);
            }
        }
    }
}
