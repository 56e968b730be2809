// A lean connect generator for issue 12 target 6 (authenticated MQTT connects per second): the same job
// as load/'s `mqtt-connect --connect-rate 0` (CONNECT with user name <prefix><i>, wait for CONNACK 0, keep
// the connection open), in C with one epoll loop, so that the client spends as little of the shared 2 cores
// as it can (the issue's own peer figures were taken with a C client). Built and run by load/issue12.sh (row 6).
//
// usage: mqtt-connect HOST PORT COUNT CONCURRENCY TOKEN_PREFIX
// prints: connects, failures, seconds, connects/s, CONNACK p50/p99/max ms, client CPU us per connect
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "mqtt-wire.h"

// state 0: connecting, CONNECT not sent; 1: awaiting CONNACK; 2: acknowledged (fd open) or failed (fd -1)
typedef struct { int fd; int index; int state; double started; } conn_t;

static const char *token_prefix;

// Sends the connection's CONNECT (client id c<i>, user name <prefix><i>); 0 when all of it went.
static int send_connect(conn_t *c)
{
    unsigned char packet[160];
    int size = encode_connect(packet, "c", token_prefix, c->index);
    if (send(c->fd, packet, (size_t)size, MSG_NOSIGNAL) != size)
    {
        return -1;
    }
    c->state = 1;
    return 0;
}

static void fail(conn_t *c, int *failed, int *in_flight)
{
    close(c->fd); // also leaves the epoll set
    c->fd = -1;
    c->state = 2;
    (*failed)++;
    (*in_flight)--;
}

int main(int argc, char **argv)
{
    if (argc != 6)
    {
        fprintf(stderr, "usage: %s HOST PORT COUNT CONCURRENCY TOKEN_PREFIX\n", argv[0]);
        return 2;
    }
    const char *host = argv[1];
    int port = atoi(argv[2]), count = atoi(argv[3]), concurrency = atoi(argv[4]);
    const char *prefix = argv[5];
    token_prefix = prefix;
    if (strlen(prefix) > 100 || count <= 0 || concurrency <= 0)
    {
        fprintf(stderr, "bad arguments\n");
        return 2;
    }

    struct sockaddr_in addr = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
    if (inet_pton(AF_INET, host, &addr.sin_addr) != 1)
    {
        fprintf(stderr, "bad host %s\n", host);
        return 2;
    }

    conn_t *conns = calloc((size_t)count, sizeof *conns);
    double *latency = calloc((size_t)count, sizeof *latency);
    int ep = epoll_create1(0);
    int next = 0, in_flight = 0, done = 0, failed = 0;
    struct rusage before, after;
    getrusage(RUSAGE_SELF, &before);
    double start = now_ms();
    struct epoll_event events[512];

    // Five system calls per connect: socket, connect, epoll_ctl, send, recv. The socket is registered once,
    // edge-triggered for both directions, and stays registered: an accepted connection stays open and idle.
    // A loopback connect usually completes inside connect(), so the CONNECT is then sent at once; otherwise
    // the first writable edge sends it. Failed connects show as EPOLLERR or EPOLLHUP (no SO_ERROR read), and
    // TCP_NODELAY is left alone (one segment each way).
    while (done + failed < count)
    {
        while (in_flight < concurrency && next < count)
        {
            conn_t *c = &conns[next];
            c->index = next++;
            c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
            if (c->fd < 0)
            {
                perror("socket");
                c->state = 2;
                failed++;
                continue;
            }
            c->started = now_ms();
            int r = connect(c->fd, (struct sockaddr *)&addr, sizeof addr);
            in_flight++;
            struct epoll_event ev = { .events = EPOLLIN | EPOLLOUT | EPOLLET | EPOLLRDHUP, .data.ptr = c };
            if ((r < 0 && errno != EINPROGRESS) || (r == 0 && send_connect(c) != 0) || epoll_ctl(ep, EPOLL_CTL_ADD, c->fd, &ev) != 0)
            {
                fail(c, &failed, &in_flight);
            }
        }

        int n = epoll_wait(ep, events, 512, 10000);
        if (n == 0)
        {
            fprintf(stderr, "no progress for 10 s: %d in flight\n", in_flight);
            break;
        }
        for (int i = 0; i < n; i++)
        {
            conn_t *c = events[i].data.ptr;
            uint32_t flags = events[i].events;
            if (c->state == 2)
            {
                continue; // acknowledged and kept open (or already failed): nothing more to read
            }
            if (c->state == 0)
            {
                if ((flags & (EPOLLERR | EPOLLHUP)) != 0 || send_connect(c) != 0)
                {
                    fail(c, &failed, &in_flight);
                }
                continue;
            }
            if ((flags & (EPOLLIN | EPOLLERR | EPOLLHUP | EPOLLRDHUP)) == 0)
            {
                continue; // the writable edge of a CONNECT sent inside connect()
            }
            unsigned char ack[4];
            ssize_t got = recv(c->fd, ack, sizeof ack, MSG_WAITALL);
            if (got < 0 && errno == EAGAIN && (flags & (EPOLLERR | EPOLLHUP | EPOLLRDHUP)) == 0)
            {
                continue;
            }
            if (got == 4 && ack[0] == 0x20 && ack[1] == 2 && ack[3] == 0)
            {
                latency[done++] = now_ms() - c->started;
                c->state = 2;
                in_flight--;
            }
            else
            {
                fail(c, &failed, &in_flight);
            }
        }
    }

    double seconds = (now_ms() - start) / 1e3;
    getrusage(RUSAGE_SELF, &after);
    double cpu_us = (after.ru_utime.tv_sec - before.ru_utime.tv_sec + after.ru_stime.tv_sec - before.ru_stime.tv_sec) * 1e6
        + (after.ru_utime.tv_usec - before.ru_utime.tv_usec + after.ru_stime.tv_usec - before.ru_stime.tv_usec);
    qsort(latency, (size_t)done, sizeof *latency, compare_doubles);
    printf("connects: %d\nfailures: %d\nseconds: %.3f\nconnects/s: %.0f\n", done, failed, seconds, done / seconds);
    if (done > 0)
    {
        printf("CONNACK ms: p50 %.2f p99 %.2f max %.2f\n", latency[done / 2], latency[(int)(done * 0.99)], latency[done - 1]);
        printf("client CPU us per connect: %.1f\n", cpu_us / done);
    }
    for (int i = 0; i < next; i++)
    {
        if (conns[i].fd >= 0)
        {
            close(conns[i].fd);
        }
    }
    return failed == 0 && done == count ? 0 : 1;
}
