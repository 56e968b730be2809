// A lean QoS 1 publisher for issue 12 (the issue's peer figures were taken with "a pre-encoded, pipelined C
// MQTT client"): CONNECTIONS connections (user name <prefix><i>), each keeping up to WINDOW PUBLISHes of one
// pre-encoded PAYLOAD-byte JSON telemetry message in flight, for SECONDS, either as fast as PUBACKs come back
// (RATE 0) or paced at RATE messages per second in all. One thread, one epoll loop, no allocation after start.
// PUBACK latency is taken from the write of the PUBLISH to the read of its PUBACK, in a 10 µs histogram.
// With TIMELINE_MS, the run is also cut into windows of that length (by the PUBACK's arrival), each printed with
// its acked count, its slowest PUBACK and how many took over 5 ms (row 5's p99 target): when in the run the slow
// ones came, to line them up with the server's log (checkpoints) or a per-thread CPU sample.
// Build and run: load/issue12.sh (row 5 and rows 1-2 with CLIENT=native).
//
// usage: mqtt-publish HOST PORT CONNECTIONS WINDOW PAYLOAD SECONDS RATE TOKEN_PREFIX [TIMELINE_MS]
// prints: acked, acked msgs/s, PUBACK ms p50/p90/p99/p99.9/max, client CPU us per message; with TIMELINE_MS one
// line per window: "window S s: acked N, max M ms, over 5 ms K" (S its start in seconds from the first send)
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

#define BUCKET_US 10
#define BUCKETS 1000000 // 10 s in 10 µs buckets; slower acks land in the last one
#define MAX_WINDOW 512
#define ID_RING 1024 // send times by packet id modulo this: unique among any MAX_WINDOW consecutive ids (id 0 is skipped)
#define SLOW_US 5000 // a PUBACK slower than this counts as slow in the timeline (row 5's p99 target)

typedef struct
{
    int fd;
    int in_flight;
    uint16_t next_id;
    double next_due;          // paced mode: when this connection may send its next message (ms)
    double sent_at[ID_RING];  // by packet id, modulo ID_RING
    unsigned char rx[64];     // a partial PUBACK carried over between reads
    int rx_len;
} conn_t;

static uint32_t histogram[BUCKETS];

typedef struct
{
    uint64_t acked;
    uint64_t slow;
    double max_us;
} window_t;

static double percentile(uint64_t total, double p)
{
    return histogram_percentile(histogram, BUCKETS, BUCKET_US, total, p);
}

static int connect_one(const struct sockaddr_in *addr, const char *prefix, int index)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (fd < 0 || connect(fd, (const struct sockaddr *)addr, sizeof *addr) != 0)
    {
        return -1;
    }
    unsigned char packet[160];
    int n = encode_connect(packet, "p", prefix, index);
    unsigned char ack[4];
    if (write_all(fd, packet, n) != 0 || recv(fd, ack, 4, MSG_WAITALL) != 4 || ack[0] != 0x20 || ack[3] != 0)
    {
        close(fd);
        return -1;
    }
    return fd;
}

int main(int argc, char **argv)
{
    if (argc != 9 && argc != 10)
    {
        fprintf(stderr, "usage: %s HOST PORT CONNECTIONS WINDOW PAYLOAD SECONDS RATE TOKEN_PREFIX [TIMELINE_MS]\n", argv[0]);
        return 2;
    }
    const char *host = argv[1];
    int port = atoi(argv[2]), count = atoi(argv[3]), window = atoi(argv[4]), payload = atoi(argv[5]);
    double seconds = atof(argv[6]), rate = atof(argv[7]);
    const char *prefix = argv[8];
    double timeline_ms = argc == 10 ? atof(argv[9]) : 0;
    if (count <= 0 || window <= 0 || window > MAX_WINDOW || payload < 16 || payload > 100 || seconds <= 0 || strlen(prefix) > 100
        || timeline_ms < 0 || (timeline_ms > 0 && seconds * 1000.0 / timeline_ms > 1e6))
    {
        fprintf(stderr, "bad arguments (window 1..%d, payload 16..100 bytes, at most 1,000,000 timeline windows)\n", MAX_WINDOW);
        return 2;
    }
    struct sockaddr_in addr = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
    if (inet_pton(AF_INET, host, &addr.sin_addr) != 1)
    {
        fprintf(stderr, "bad host %s\n", host);
        return 2;
    }

    // The PUBLISH, pre-encoded; only its packet id changes. Same JSON as load/'s generator, padded to PAYLOAD bytes.
    static const char topic[] = "v1/devices/me/telemetry";
    char json[128];
    int head = snprintf(json, sizeof json, "{\"temperature\":21.5,\"humidity\":40,\"pad\":\"");
    int pad = payload - head - 2;
    if (pad < 0)
    {
        pad = 0;
    }
    memset(json + head, 'x', (size_t)pad);
    memcpy(json + head + pad, "\"}", 2);
    int json_len = head + pad + 2;
    unsigned char publish[256];
    int topic_len = (int)strlen(topic);
    int p = 0;
    publish[p++] = 0x32; // PUBLISH, QoS 1
    publish[p++] = (unsigned char)(2 + topic_len + 2 + json_len);
    publish[p++] = 0;
    publish[p++] = (unsigned char)topic_len;
    memcpy(publish + p, topic, (size_t)topic_len);
    p += topic_len;
    int id_at = p;
    p += 2;
    memcpy(publish + p, json, (size_t)json_len);
    int publish_len = p + json_len;

    conn_t *conns = calloc((size_t)count, sizeof *conns);
    // One more window than the run's length: the last PUBACKs read may arrive just after its end.
    int windows = timeline_ms > 0 ? (int)(seconds * 1000.0 / timeline_ms) + 2 : 0;
    window_t *timeline = windows > 0 ? calloc((size_t)windows, sizeof *timeline) : NULL;
    int ep = epoll_create1(0);
    for (int i = 0; i < count; i++)
    {
        conns[i].fd = connect_one(&addr, prefix, i);
        if (conns[i].fd < 0)
        {
            fprintf(stderr, "connection %d refused or failed (is device %s%d provisioned?)\n", i, prefix, i);
            return 1;
        }
        conns[i].next_id = 1;
        struct epoll_event ev = { .events = EPOLLIN, .data.ptr = &conns[i] };
        epoll_ctl(ep, EPOLL_CTL_ADD, conns[i].fd, &ev);
    }

    double per_conn_interval = rate > 0 ? 1000.0 * count / rate : 0; // ms between one connection's messages
    struct rusage before, after;
    getrusage(RUSAGE_SELF, &before);
    double start = now_ms(), end = start + seconds * 1000.0;
    for (int i = 0; i < count; i++)
    {
        conns[i].next_due = start + (per_conn_interval * i) / count;
    }
    uint64_t acked = 0, sent = 0;
    unsigned char batch[MAX_WINDOW * 128];
    struct epoll_event events[256];
    double now = start;
    while (now < end)
    {
        // Send: every connection tops its window up (paced: only the messages that are due).
        for (int i = 0; i < count; i++)
        {
            conn_t *c = &conns[i];
            int n = 0, len = 0;
            double stamp = now_ms(); // the write below is this batch's send time (a sweep of 100 writes can take a millisecond)
            while (c->in_flight + n < window && (rate <= 0 || c->next_due <= stamp) && len + publish_len <= (int)sizeof batch)
            {
                memcpy(batch + len, publish, (size_t)publish_len);
                batch[len + id_at] = (unsigned char)(c->next_id >> 8);
                batch[len + id_at + 1] = (unsigned char)c->next_id;
                c->sent_at[c->next_id % ID_RING] = stamp;
                c->next_id = (uint16_t)(c->next_id == 65535 ? 1 : c->next_id + 1);
                len += publish_len;
                n++;
                if (rate > 0)
                {
                    c->next_due += per_conn_interval;
                }
            }
            if (n > 0)
            {
                if (write_all(c->fd, batch, len) != 0)
                {
                    fprintf(stderr, "connection %d: write failed\n", i);
                    return 1;
                }
                c->in_flight += n;
                sent += (uint64_t)n;
            }
        }

        int ready = epoll_wait(ep, events, 256, rate > 0 ? 1 : 100);
        now = now_ms();
        for (int e = 0; e < ready; e++)
        {
            conn_t *c = events[e].data.ptr;
            unsigned char buffer[16384];
            memcpy(buffer, c->rx, (size_t)c->rx_len);
            ssize_t got = recv(c->fd, buffer + c->rx_len, sizeof buffer - (size_t)c->rx_len, MSG_DONTWAIT);
            if (got <= 0)
            {
                if (got < 0 && errno == EAGAIN)
                {
                    continue;
                }
                fprintf(stderr, "connection %ld: closed by the server\n", (long)(c - conns));
                return 1;
            }
            int total = c->rx_len + (int)got, at = 0;
            while (total - at >= 4)
            {
                if (buffer[at] != 0x40 || buffer[at + 1] != 2)
                {
                    fprintf(stderr, "connection %ld: unexpected packet 0x%02x\n", (long)(c - conns), buffer[at]);
                    return 1;
                }
                uint16_t id = (uint16_t)((buffer[at + 2] << 8) | buffer[at + 3]);
                double us = (now - c->sent_at[id % ID_RING]) * 1000.0;
                int bucket = (int)(us / BUCKET_US);
                histogram[bucket < 0 ? 0 : bucket >= BUCKETS ? BUCKETS - 1 : bucket]++;
                if (timeline != NULL)
                {
                    int w = (int)((now - start) / timeline_ms);
                    window_t *tw = &timeline[w < 0 ? 0 : w >= windows ? windows - 1 : w];
                    tw->acked++;
                    tw->slow += us > SLOW_US;
                    tw->max_us = us > tw->max_us ? us : tw->max_us;
                }
                c->in_flight--;
                acked++;
                at += 4;
            }
            c->rx_len = total - at;
            memcpy(c->rx, buffer + at, (size_t)c->rx_len);
        }
    }

    double elapsed = (now_ms() - start) / 1000.0;
    getrusage(RUSAGE_SELF, &after);
    double cpu_us = (after.ru_utime.tv_sec - before.ru_utime.tv_sec + after.ru_stime.tv_sec - before.ru_stime.tv_sec) * 1e6
        + (after.ru_utime.tv_usec - before.ru_utime.tv_usec + after.ru_stime.tv_usec - before.ru_stime.tv_usec);
    printf("sent: %llu\nacked: %llu\nseconds: %.3f\nacked msgs/s: %.0f\n", (unsigned long long)sent, (unsigned long long)acked, elapsed, acked / elapsed);
    if (acked > 0)
    {
        printf("PUBACK ms: p50 %.2f p90 %.2f p99 %.2f p99.9 %.2f max %.2f\n", percentile(acked, 0.5), percentile(acked, 0.9),
            percentile(acked, 0.99), percentile(acked, 0.999), percentile(acked, 0.999999));
        printf("client CPU us per message: %.2f\n", cpu_us / acked);
    }
    for (int w = 0; w < windows; w++)
    {
        printf("window %.3f s: acked %llu, max %.2f ms, over 5 ms %llu\n", w * timeline_ms / 1000.0, (unsigned long long)timeline[w].acked,
            timeline[w].max_us / 1000.0, (unsigned long long)timeline[w].slow);
    }
    for (int i = 0; i < count; i++)
    {
        close(conns[i].fd);
    }
    return acked > 0 ? 0 : 1;
}
