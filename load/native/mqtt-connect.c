// A lean connect generator for issue 12 target 6 (authenticated MQTT connects per second): the same job
// as load/'s `mqtt-connect --connect-rate 0` (CONNECT with user name <prefix><i>, wait for CONNACK 0, keep
// the connection open), in C with one epoll loop, so that the client spends as little of the shared 2 cores
// as it can (the issue's own peer figures were taken with a C client). Build and run: load/connect-rate-native.sh.
//
// usage: mqtt-connect HOST PORT COUNT CONCURRENCY TOKEN_PREFIX
// prints: connects, failures, seconds, connects/s, CONNACK p50/p99/max ms, client CPU us per connect
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
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

typedef struct { int fd; int index; int state; double started; } conn_t; // state 0 connecting, 1 awaiting CONNACK

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
    int *open_fds = calloc((size_t)count, sizeof *open_fds);
    int ep = epoll_create1(0);
    int next = 0, in_flight = 0, done = 0, failed = 0, opened = 0;
    struct rusage before, after;
    getrusage(RUSAGE_SELF, &before);
    double start = now_ms();
    struct epoll_event events[512];

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
                failed++;
                continue;
            }
            int one = 1;
            setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
            c->started = now_ms();
            int r = connect(c->fd, (struct sockaddr *)&addr, sizeof addr);
            if (r < 0 && errno != EINPROGRESS)
            {
                close(c->fd);
                failed++;
                continue;
            }
            struct epoll_event ev = { .events = EPOLLOUT, .data.ptr = c };
            epoll_ctl(ep, EPOLL_CTL_ADD, c->fd, &ev);
            in_flight++;
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
            if (c->state == 0)
            {
                int error = 0;
                socklen_t len = sizeof error;
                getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &error, &len);
                unsigned char packet[160];
                int size = encode_connect(packet, "c", prefix, c->index);
                if (error != 0 || send(c->fd, packet, (size_t)size, MSG_NOSIGNAL) != size)
                {
                    epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
                    close(c->fd);
                    failed++;
                    in_flight--;
                    continue;
                }
                c->state = 1;
                struct epoll_event ev = { .events = EPOLLIN, .data.ptr = c };
                epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
                continue;
            }

            unsigned char ack[4];
            ssize_t got = recv(c->fd, ack, sizeof ack, MSG_WAITALL);
            epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
            in_flight--;
            if (got == 4 && ack[0] == 0x20 && ack[1] == 2 && ack[3] == 0)
            {
                latency[done++] = now_ms() - c->started;
                open_fds[opened++] = c->fd; // stays open: an authenticated, idle connection
            }
            else
            {
                close(c->fd);
                failed++;
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
    for (int i = 0; i < opened; i++)
    {
        close(open_fds[i]);
    }
    return failed == 0 && done == count ? 0 : 1;
}
