// The durable floor of issue 12 target 5 with no runtime in the way: one thread, one epoll set, no thread hop.
// Each round reads whatever the ready connections sent, appends all their complete packets to FILE in one
// write-through write (O_SYNC, as the uplink log's segments are opened), and only then sends the round's CONNACKs
// and PUBACKs. A PUBLISH that arrives while a write runs goes into the next round's write. So a PUBACK waits for at
// most the write in progress, its own write, and the sends of one round: nothing a server could leave out if every
// PUBACK must follow a durable write. load/disk-floor.sh runs the row-5 load against it; load/'s bare-server
// --durable is the same group commit inside Kestrel.
//
// usage: durable-sink PORT FILE SECONDS   (listens on 127.0.0.1:PORT; FILE must not exist and is deleted at the end;
//        stops after SECONDS or on SIGTERM/SIGINT; the file holds all it was sent, so it is meant for runs of minutes)
// prints "listening on 127.0.0.1:PORT" once it accepts, and at the end:
//   rounds R writes W bytes B publishes P: write ms p50 .. p90 .. p99 .. p99.9 .. max ..
#define _GNU_SOURCE
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <unistd.h>

#include "mqtt-wire.h"

#define MAX_FD 65536
#define IN_CAPACITY 65536
#define OUT_CAPACITY (IN_CAPACITY * 2)
#define WRITE_BUCKET_US 10
#define WRITE_BUCKETS 100000

struct connection
{
    unsigned char *in, *out;
    int in_length, out_length, dirty;
};

static struct connection connections[MAX_FD];
static int dirty[MAX_FD], dirty_count;
static uint32_t write_histogram[WRITE_BUCKETS];
static volatile sig_atomic_t stopping;

static void stop(int signal)
{
    (void)signal;
    stopping = 1;
}

static void close_connection(int epoll, int fd)
{
    epoll_ctl(epoll, EPOLL_CTL_DEL, fd, NULL);
    close(fd);
    free(connections[fd].in);
    free(connections[fd].out);
    connections[fd] = (struct connection){0};
}

// Parses the complete packets in c->in: appends each to the group and its answer to c->out. -1 on a malformed one.
static int take_packets(struct connection *c, unsigned char *group, int *group_length, long long *publishes)
{
    int at = 0;
    while (at < c->in_length)
    {
        int remaining = 0, header = decode_fixed_header(c->in + at, c->in_length - at, &remaining);
        if (header < 0 || remaining > IN_CAPACITY - 5)
        {
            return -1; // malformed, or a packet larger than a read buffer
        }
        if (header == 0 || c->in_length - at < header + remaining)
        {
            break;
        }
        const unsigned char *packet = c->in + at;
        int type = packet[0] >> 4;
        if (type == 1)
        {
            memcpy(c->out + c->out_length, (const unsigned char[]){0x20, 0x02, 0x00, 0x00}, 4);
            c->out_length += 4;
        }
        else if (type == 3 && (packet[0] & 0x06) == 0x02 && remaining >= 4)
        {
            int topic = packet[header] << 8 | packet[header + 1];
            if (topic + 4 > remaining)
            {
                return -1;
            }
            unsigned char *ack = c->out + c->out_length;
            ack[0] = 0x40, ack[1] = 0x02, ack[2] = packet[header + 2 + topic], ack[3] = packet[header + 3 + topic];
            c->out_length += 4;
            (*publishes)++;
        }
        memcpy(group + *group_length, packet, (size_t)(header + remaining));
        *group_length += header + remaining;
        at += header + remaining;
    }
    memmove(c->in, c->in + at, (size_t)(c->in_length - at));
    c->in_length -= at;
    return 0;
}

int main(int argc, char **argv)
{
    if (argc != 4 || atoi(argv[1]) <= 0 || atoi(argv[1]) > 65535 || atoi(argv[3]) <= 0)
    {
        fprintf(stderr, "usage: %s PORT FILE SECONDS\n", argv[0]);
        return 2;
    }
    int file = open(argv[2], O_WRONLY | O_CREAT | O_EXCL | O_SYNC, 0644);
    if (file < 0)
    {
        perror(argv[2]);
        return 1;
    }
    int listener = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0), one = 1;
    struct sockaddr_in address = {.sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(argv[1])), .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    setsockopt(listener, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (bind(listener, (struct sockaddr *)&address, sizeof address) != 0 || listen(listener, 4096) != 0)
    {
        perror("listen");
        unlink(argv[2]);
        return 1;
    }
    int epoll = epoll_create1(0);
    struct epoll_event event = {.events = EPOLLIN, .data.fd = listener}, events[1024];
    epoll_ctl(epoll, EPOLL_CTL_ADD, listener, &event);
    // Every connection's whole input fits in one round's group.
    size_t group_capacity = (size_t)IN_CAPACITY * 1024;
    unsigned char *group = malloc(group_capacity);
    if (group == NULL)
    {
        fprintf(stderr, "out of memory\n");
        return 1;
    }
    struct sigaction on_stop = {.sa_handler = stop};
    sigaction(SIGTERM, &on_stop, NULL);
    sigaction(SIGINT, &on_stop, NULL);
    printf("listening on 127.0.0.1:%s\n", argv[1]);
    fflush(stdout);

    double deadline = now_ms() + atoi(argv[3]) * 1000.0;
    long long rounds = 0, writes = 0, bytes = 0, publishes = 0, offset = 0;
    double slowest = 0;
    int failed = 0;
    while (!failed && !stopping && now_ms() < deadline)
    {
        int ready = epoll_wait(epoll, events, 1024, 100); // -1 (EINTR) on a signal: the round is empty
        int group_length = 0;
        for (int i = 0; i < ready; i++)
        {
            int fd = events[i].data.fd;
            if (fd == listener)
            {
                int accepted;
                while ((accepted = accept4(listener, NULL, NULL, SOCK_NONBLOCK)) >= 0)
                {
                    if (accepted >= MAX_FD)
                    {
                        close(accepted);
                        continue;
                    }
                    setsockopt(accepted, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
                    connections[accepted] = (struct connection){.in = malloc(IN_CAPACITY), .out = malloc(OUT_CAPACITY)};
                    struct epoll_event add = {.events = EPOLLIN, .data.fd = accepted};
                    epoll_ctl(epoll, EPOLL_CTL_ADD, accepted, &add);
                }
                continue;
            }
            struct connection *c = &connections[fd];
            ssize_t n = read(fd, c->in + c->in_length, (size_t)(IN_CAPACITY - c->in_length));
            if (n <= 0)
            {
                if (n == 0 || errno != EAGAIN)
                {
                    close_connection(epoll, fd); // with its answers, if any
                }
                continue;
            }
            c->in_length += (int)n;
            if (take_packets(c, group, &group_length, &publishes) != 0)
            {
                close_connection(epoll, fd);
                continue;
            }
            if (c->out_length > 0 && !c->dirty)
            {
                c->dirty = 1;
                dirty[dirty_count++] = fd;
            }
        }
        rounds++;
        if (group_length > 0)
        {
            double started = now_ms();
            if (pwrite(file, group, (size_t)group_length, offset) != group_length)
            {
                perror("pwrite");
                failed = 1;
                break;
            }
            double took = now_ms() - started;
            slowest = took > slowest ? took : slowest;
            int bucket = (int)(took * 1000 / WRITE_BUCKET_US);
            write_histogram[bucket < WRITE_BUCKETS ? bucket : WRITE_BUCKETS - 1]++;
            offset += group_length, bytes += group_length, writes++;
        }
        // The round's answers, only now that its packets are on the disk.
        for (int i = 0; i < dirty_count; i++)
        {
            struct connection *c = &connections[dirty[i]];
            if (c->out != NULL && c->out_length > 0 && write_all(dirty[i], c->out, c->out_length) != 0)
            {
                close_connection(epoll, dirty[i]);
                continue;
            }
            c->out_length = 0, c->dirty = 0;
        }
        dirty_count = 0;
    }
    close(file);
    unlink(argv[2]);
    printf("rounds %lld writes %lld bytes %lld publishes %lld: write ms p50 %.2f p90 %.2f p99 %.2f p99.9 %.2f max %.2f\n", rounds, writes,
        bytes, publishes, histogram_percentile(write_histogram, WRITE_BUCKETS, WRITE_BUCKET_US, writes, 0.5),
        histogram_percentile(write_histogram, WRITE_BUCKETS, WRITE_BUCKET_US, writes, 0.9),
        histogram_percentile(write_histogram, WRITE_BUCKETS, WRITE_BUCKET_US, writes, 0.99),
        histogram_percentile(write_histogram, WRITE_BUCKETS, WRITE_BUCKET_US, writes, 0.999), slowest);
    return failed;
}
