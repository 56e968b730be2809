// A lean two-way RPC generator for issue 12 target 7 (REST -> MQTT device -> REST): the same job as load/'s
// `rpc` scenario, in C with one epoll thread, so that neither a GC pause nor a thread-pool hop of the client
// lands inside the measured latency, and the client takes as little of the shared 2 cores as it can.
// Build and run: load/rpc-native.sh (or load/issue12.sh, row 7).
//
// Device side: DEVICES MQTT connections (user name TOKEN_PREFIX<i>, the devices load/ provisions), each
// subscribed to v1/devices/me/rpc/request/+ (QoS 0), answering every request on v1/devices/me/rpc/response/{id}
// with the request's own payload (QoS 0); the answers to one read go out in one send.
// REST side: CONCURRENCY keep-alive HTTP/1.1 connections, at most one call in flight each; worker w calls
// device w % DEVICES (so at most ceil(CONCURRENCY/DEVICES) calls pending per device; the server answers 409
// beyond 10): POST /api/plugins/rpc/twoway/{id} with X-Authorization: Bearer JWT and the body
// {"method":"echo","params":{"seq":N},"timeout":10000}, pre-built per worker; only the seq digits are patched
// (the seq field is padded with spaces to a fixed width, so Content-Length never changes). A round trip counts
// when the answer is 200 and its body contains "seq":N} (the device echoes the params); any other answer is a
// failure (the first one's status and body go to stderr). Content-Length and chunked answers are both read.
// RATE 0: every worker sends its next call as soon as the last one is answered; latency from the send.
// RATE > 0: worker w's k-th call is due at start + (k * CONCURRENCY + w) / RATE (the workers' phases spread
// evenly, as load/Pacer.cs does); latency from the due time, so a late send counts (coordinated omission).
// At the end no call is started; the calls in flight are awaited (at most 15 s) and counted.
//
// usage: rpc HOST HTTP_PORT MQTT_PORT DEVICES CONCURRENCY SECONDS RATE TOKEN_PREFIX JWT DEVICE_IDS_FILE
//   DEVICE_IDS_FILE: one device id a line, line i the id of the device whose token is TOKEN_PREFIX<i>.
// prints: sent, round trips/failures/seconds/rate, latency ms p50/p90/p99/p99.9/max, client CPU us per round
// trip, requests answered by devices. Exit code 0 when every call was a round trip, 1 otherwise, 2 bad arguments.
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "mqtt-wire.h"

#define BUCKET_US 10
#define BUCKETS 2000000 // 20 s in 10 µs buckets; slower answers land in the last one
#define SEQ_WIDTH 15    // the seq field: digits, then spaces (JSON whitespace)
#define HTTP_RX 16384   // one answer must fit (the server's answers are a few hundred bytes)
#define MQTT_RX 65536
#define DRAIN_MS 15000.0 // the calls in flight at the end: the RPC timeout (10 s) and a margin

typedef struct
{
    int fd;
    uint64_t answered;
    int rx_len;
    unsigned char rx[MQTT_RX];
    int tx_len;
    unsigned char tx[MQTT_RX + 4096];
} device_t;

typedef struct
{
    int fd;
    int index;
    int busy;         // a call is in flight
    uint64_t k;       // this worker's next call
    uint64_t seq;     // the call in flight
    double since;     // its due time (paced) or send time (max), ms
    unsigned char *request;
    int request_len, seq_at;
    char expected[40];
    int expected_len;
    int rx_len;
    unsigned char rx[HTTP_RX];
} worker_t;

static uint32_t histogram[BUCKETS];
static struct sockaddr_in http_addr, mqtt_addr;
static int ep, concurrency;
static double rate, start_ms;
static uint64_t round_trips, failures, sent;
static int reported;
static unsigned char scratch[HTTP_RX]; // a chunked body, de-chunked

static double percentile(uint64_t total, double p)
{
    return histogram_percentile(histogram, BUCKETS, BUCKET_US, total, p);
}

static int open_socket(const struct sockaddr_in *addr)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0)
    {
        return -1;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    struct timeval timeout = { .tv_sec = 10 }; // the handshakes below; the run itself is non-blocking
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof timeout);
    if (connect(fd, (const struct sockaddr *)addr, sizeof *addr) != 0)
    {
        close(fd);
        return -1;
    }
    return fd;
}

static void watch(int fd, uint64_t tag)
{
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
    struct epoll_event ev = { .events = EPOLLIN, .data.u64 = tag };
    epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev);
}

#define DEVICE_TAG (1ULL << 32)

static void failure(const char *what, int status, const unsigned char *body, int body_len)
{
    failures++;
    if (!reported)
    {
        reported = 1;
        fprintf(stderr, "first failure: %s: HTTP %d: %.*s\n", what, status, body_len > 400 ? 400 : body_len, (const char *)body);
    }
}

// One HTTP/1.1 answer at the start of buf[0..len): its length when complete (status and body set; a chunked
// body is de-chunked into scratch), 0 when more bytes are needed, -1 when malformed.
static int parse_answer(const unsigned char *buf, int len, int *status, const unsigned char **body, int *body_len)
{
    const unsigned char *end = memmem(buf, (size_t)len, "\r\n\r\n", 4);
    if (end == NULL)
    {
        return len >= HTTP_RX ? -1 : 0;
    }
    int head = (int)(end - buf) + 4;
    if (head < 12 || memcmp(buf, "HTTP/1.", 7) != 0)
    {
        return -1;
    }
    *status = atoi((const char *)buf + 9);
    long content_length = -1;
    int chunked = 0;
    for (const unsigned char *line = (const unsigned char *)memchr(buf, '\n', (size_t)head) + 1; line < end;
         line = (const unsigned char *)memchr(line, '\n', (size_t)(end + 2 - line)) + 1)
    {
        if (strncasecmp((const char *)line, "content-length:", 15) == 0)
        {
            content_length = strtol((const char *)line + 15, NULL, 10);
        }
        else if (strncasecmp((const char *)line, "transfer-encoding:", 18) == 0)
        {
            const unsigned char *eol = memchr(line, '\r', (size_t)(end - line + 1));
            chunked = memmem(line, (size_t)(eol - line), "chunked", 7) != NULL;
        }
    }
    if (!chunked)
    {
        if (content_length < 0)
        {
            content_length = (*status == 204 || *status == 304) ? 0 : -1;
        }
        if (content_length < 0 || head + content_length > HTTP_RX)
        {
            return -1; // no framing (body until close) or larger than any answer of the server: not handled
        }
        if (len < head + content_length)
        {
            return 0;
        }
        *body = buf + head;
        *body_len = (int)content_length;
        return head + (int)content_length;
    }
    int at = head, out = 0;
    while (1)
    {
        const unsigned char *eol = memmem(buf + at, (size_t)(len - at), "\r\n", 2);
        if (eol == NULL)
        {
            return len >= HTTP_RX ? -1 : 0;
        }
        char *digits_end;
        long size = strtol((const char *)buf + at, &digits_end, 16);
        if ((const unsigned char *)digits_end == buf + at || size < 0 || size > HTTP_RX)
        {
            return -1;
        }
        at = (int)(eol - buf) + 2;
        if (size == 0)
        {
            // Trailers (none expected), then an empty line.
            const unsigned char *last = len - at >= 2 && buf[at] == '\r' && buf[at + 1] == '\n'
                ? buf + at - 2
                : memmem(buf + at, (size_t)(len - at), "\r\n\r\n", 4);
            if (last == NULL)
            {
                return len >= HTTP_RX ? -1 : 0;
            }
            *body = scratch;
            *body_len = out;
            return (int)(last - buf) + 4;
        }
        if (len - at < size + 2)
        {
            return len >= HTTP_RX ? -1 : 0;
        }
        if (out + size > (long)sizeof scratch)
        {
            return -1;
        }
        memcpy(scratch + out, buf + at, (size_t)size);
        out += (int)size;
        at += (int)size + 2;
    }
}

static void send_call(worker_t *w, double since)
{
    w->seq = w->k * (uint64_t)concurrency + (uint64_t)w->index;
    w->k++;
    char digits[24];
    int n = snprintf(digits, sizeof digits, "%llu", (unsigned long long)w->seq);
    memcpy(w->request + w->seq_at, digits, (size_t)n);
    memset(w->request + w->seq_at + n, ' ', (size_t)(SEQ_WIDTH - n));
    w->expected_len = snprintf(w->expected, sizeof w->expected, "\"seq\":%s}", digits);
    w->since = since;
    w->busy = 1;
    sent++;
    if (write_all(w->fd, w->request, w->request_len) != 0)
    {
        // Seen as a closed connection by the next read.
        shutdown(w->fd, SHUT_RDWR);
    }
}

static double due_ms(uint64_t k, int w)
{
    return start_ms + ((double)k * concurrency + w) * 1000.0 / rate;
}

// The worker's connection was closed (or broke the protocol): the call in flight fails; a new connection.
static void reconnect(worker_t *w, const char *why)
{
    if (w->busy)
    {
        failure(why, 0, (const unsigned char *)"", 0);
        w->busy = 0;
    }
    epoll_ctl(ep, EPOLL_CTL_DEL, w->fd, NULL);
    close(w->fd);
    w->rx_len = 0;
    w->fd = open_socket(&http_addr);
    if (w->fd < 0)
    {
        fprintf(stderr, "worker %d: cannot reconnect to the REST port\n", w->index);
        exit(1);
    }
    watch(w->fd, (uint64_t)w->index);
}

static void on_worker(worker_t *w, double now, int sending)
{
    ssize_t got = recv(w->fd, w->rx + w->rx_len, sizeof w->rx - (size_t)w->rx_len, 0);
    if (got < 0 && errno == EAGAIN)
    {
        return;
    }
    if (got <= 0)
    {
        reconnect(w, "connection closed by the server");
    }
    else
    {
        w->rx_len += (int)got;
        int status, body_len;
        const unsigned char *body;
        int used = parse_answer(w->rx, w->rx_len, &status, &body, &body_len);
        if (used == 0)
        {
            return;
        }
        if (used < 0 || !w->busy || used != w->rx_len)
        {
            // Malformed, unasked for, or more than one answer to one call: one failure, a new connection.
            failure("unreadable answer", 0, w->rx, w->rx_len);
            w->busy = 0;
            reconnect(w, "unreadable answer");
        }
        else
        {
            w->busy = 0;
            w->rx_len = 0;
            if (status == 200 && memmem(body, (size_t)body_len, w->expected, (size_t)w->expected_len) != NULL)
            {
                round_trips++;
                int bucket = (int)((now - w->since) * 1000.0 / BUCKET_US);
                histogram[bucket < 0 ? 0 : bucket >= BUCKETS ? BUCKETS - 1 : bucket]++;
            }
            else
            {
                failure(status == 200 ? "wrong echo" : "not 200", status, body, body_len);
            }
        }
    }
    if (sending && !w->busy)
    {
        if (rate <= 0)
        {
            send_call(w, now);
        }
        else if (due_ms(w->k, w->index) <= now)
        {
            send_call(w, due_ms(w->k, w->index)); // late: latency counts from when it was due
        }
    }
}

// Answers every request of one read in one send. Returns -1 when the connection is gone or broke the protocol.
static int on_device(device_t *d)
{
    ssize_t got = recv(d->fd, d->rx + d->rx_len, sizeof d->rx - (size_t)d->rx_len, 0);
    if (got < 0 && errno == EAGAIN)
    {
        return 0;
    }
    if (got <= 0)
    {
        return -1;
    }
    int total = d->rx_len + (int)got, at = 0;
    static const char prefix[] = "v1/devices/me/rpc/response/";
    while (at < total)
    {
        int remaining, header = decode_fixed_header(d->rx + at, total - at, &remaining);
        if (header < 0 || (header > 0 && header + remaining > (int)sizeof d->rx))
        {
            return -1;
        }
        if (header == 0 || total - at < header + remaining)
        {
            break;
        }
        const unsigned char *p = d->rx + at;
        if ((p[0] & 0xF0) == 0x30 && remaining >= 2)
        {
            int qos = (p[0] >> 1) & 3;
            int topic_len = (p[header] << 8) | p[header + 1];
            const unsigned char *topic = p + header + 2;
            int payload_at = header + 2 + topic_len + (qos > 0 ? 2 : 0);
            if (payload_at > header + remaining)
            {
                return -1;
            }
            if (d->tx_len + 4 > (int)sizeof d->tx)
            {
                return -1;
            }
            if (qos > 0)
            {
                unsigned char puback[4] = { 0x40, 2, p[payload_at - 2], p[payload_at - 1] };
                memcpy(d->tx + d->tx_len, puback, 4);
                d->tx_len += 4;
            }
            const unsigned char *slash = topic + topic_len;
            while (slash > topic && slash[-1] != '/')
            {
                slash--;
            }
            int id_len = (int)(topic + topic_len - slash), payload_len = header + remaining - payload_at;
            int out_topic = (int)sizeof prefix - 1 + id_len;
            int size = 2 + out_topic + payload_len;
            if (d->tx_len + 5 + size > (int)sizeof d->tx)
            {
                return -1;
            }
            unsigned char *o = d->tx + d->tx_len;
            *o++ = 0x30;
            o += encode_remaining_length(o, size);
            *o++ = (unsigned char)(out_topic >> 8);
            *o++ = (unsigned char)out_topic;
            memcpy(o, prefix, sizeof prefix - 1);
            o += sizeof prefix - 1;
            memcpy(o, slash, (size_t)id_len);
            o += id_len;
            memcpy(o, p + payload_at, (size_t)payload_len);
            o += payload_len;
            d->tx_len = (int)(o - d->tx);
            d->answered++;
        }
        at += header + remaining;
    }
    d->rx_len = total - at;
    memmove(d->rx, d->rx + at, (size_t)d->rx_len);
    if (d->tx_len > 0)
    {
        int r = write_all(d->fd, d->tx, d->tx_len);
        d->tx_len = 0;
        return r;
    }
    return 0;
}

int main(int argc, char **argv)
{
    if (argc != 11)
    {
        fprintf(stderr, "usage: %s HOST HTTP_PORT MQTT_PORT DEVICES CONCURRENCY SECONDS RATE TOKEN_PREFIX JWT DEVICE_IDS_FILE\n", argv[0]);
        return 2;
    }
    const char *host = argv[1];
    int http_port = atoi(argv[2]), mqtt_port = atoi(argv[3]), device_count = atoi(argv[4]);
    concurrency = atoi(argv[5]);
    double seconds = atof(argv[6]);
    rate = atof(argv[7]);
    const char *prefix = argv[8], *jwt = argv[9];
    if (device_count <= 0 || concurrency <= 0 || seconds <= 0 || rate < 0 || strlen(prefix) > 100 || strlen(jwt) > 4096 || jwt[0] == 0)
    {
        fprintf(stderr, "bad arguments (DEVICES, CONCURRENCY, SECONDS > 0; RATE >= 0; TOKEN_PREFIX up to 100 characters; a JWT)\n");
        return 2;
    }
    http_addr = (struct sockaddr_in){ .sin_family = AF_INET, .sin_port = htons((uint16_t)http_port) };
    mqtt_addr = (struct sockaddr_in){ .sin_family = AF_INET, .sin_port = htons((uint16_t)mqtt_port) };
    if (inet_pton(AF_INET, host, &http_addr.sin_addr) != 1 || inet_pton(AF_INET, host, &mqtt_addr.sin_addr) != 1)
    {
        fprintf(stderr, "bad host %s (an IPv4 address)\n", host);
        return 2;
    }

    // Device ids, one a line.
    FILE *ids_file = fopen(argv[10], "r");
    if (ids_file == NULL)
    {
        perror(argv[10]);
        return 2;
    }
    char (*ids)[64] = calloc((size_t)device_count, sizeof *ids);
    int id_count = 0;
    char line[256];
    while (id_count < device_count && fgets(line, sizeof line, ids_file) != NULL)
    {
        line[strcspn(line, "\r\n")] = 0;
        size_t len = strlen(line);
        if (len >= sizeof ids[0])
        {
            fprintf(stderr, "%s: line %d is not a device id (%zu characters)\n", argv[10], id_count + 1, len);
            return 2;
        }
        if (len > 0)
        {
            memcpy(ids[id_count++], line, len + 1);
        }
    }
    fclose(ids_file);
    if (id_count < device_count)
    {
        fprintf(stderr, "%s holds %d device ids, %d needed\n", argv[10], id_count, device_count);
        return 2;
    }
    if ((concurrency + device_count - 1) / device_count > 10)
    {
        fprintf(stderr, "warning: up to %d calls pending per device; the server answers 409 beyond 10\n", (concurrency + device_count - 1) / device_count);
    }

    prctl(PR_SET_TIMERSLACK, 1000UL); // wake-ups within 1 µs of a due time (the default slack is 50 µs)
    ep = epoll_create1(0);

    // Devices: CONNECT, CONNACK 0, SUBSCRIBE, SUBACK granted.
    device_t *devices = calloc((size_t)device_count, sizeof *devices);
    for (int i = 0; i < device_count; i++)
    {
        device_t *d = &devices[i];
        unsigned char packet[200], answer[5];
        int n = encode_connect(packet, "r", prefix, i);
        d->fd = open_socket(&mqtt_addr);
        if (d->fd < 0 || write_all(d->fd, packet, n) != 0 || recv(d->fd, answer, 4, MSG_WAITALL) != 4 || answer[0] != 0x20 || answer[3] != 0)
        {
            fprintf(stderr, "device %d (%s%d): MQTT connect refused or failed (is it provisioned?)\n", i, prefix, i);
            return 1;
        }
        n = encode_subscribe(packet, "v1/devices/me/rpc/request/+", 1, 0);
        if (write_all(d->fd, packet, n) != 0 || recv(d->fd, answer, 5, MSG_WAITALL) != 5 || answer[0] != 0x90 || answer[4] == 0x80)
        {
            fprintf(stderr, "device %d (%s%d): SUBSCRIBE to the RPC requests refused or failed\n", i, prefix, i);
            return 1;
        }
        watch(d->fd, DEVICE_TAG | (uint64_t)i);
    }

    // Workers: one keep-alive connection and one pre-built request each.
    worker_t *workers = calloc((size_t)concurrency, sizeof *workers);
    for (int w = 0; w < concurrency; w++)
    {
        worker_t *c = &workers[w];
        c->index = w;
        char head[5200], body[160];
        int body_len = snprintf(body, sizeof body, "{\"method\":\"echo\",\"params\":{\"seq\":%*s},\"timeout\":10000}", SEQ_WIDTH, "");
        int head_len = snprintf(head, sizeof head,
            "POST /api/plugins/rpc/twoway/%s HTTP/1.1\r\nHost: %s:%d\r\nX-Authorization: Bearer %s\r\nContent-Type: application/json\r\n"
            "Content-Length: %d\r\n\r\n", ids[w % device_count], host, http_port, jwt, body_len);
        c->request = malloc((size_t)(head_len + body_len));
        memcpy(c->request, head, (size_t)head_len);
        memcpy(c->request + head_len, body, (size_t)body_len);
        c->request_len = head_len + body_len;
        c->seq_at = head_len + (int)(strstr(body, "\"seq\":") - body) + 6;
        c->fd = open_socket(&http_addr);
        if (c->fd < 0)
        {
            fprintf(stderr, "worker %d: cannot connect to the REST port %d\n", w, http_port);
            return 1;
        }
        watch(c->fd, (uint64_t)w);
    }

    struct rusage before, after;
    getrusage(RUSAGE_SELF, &before);
    start_ms = now_ms();
    double end = start_ms + seconds * 1000.0, now = start_ms;
    if (rate <= 0)
    {
        for (int w = 0; w < concurrency; w++)
        {
            send_call(&workers[w], now);
        }
    }
    uint64_t cursor = 0; // paced: the next call (k * concurrency + w) whose due time has not been handled
    struct epoll_event events[512];
    while (1)
    {
        int sending = now < end;
        if (!sending)
        {
            int in_flight = 0;
            for (int w = 0; w < concurrency; w++)
            {
                in_flight += workers[w].busy;
            }
            if (in_flight == 0 || now > end + DRAIN_MS)
            {
                if (in_flight > 0)
                {
                    fprintf(stderr, "%d calls unanswered %.0f s after the end\n", in_flight, DRAIN_MS / 1000);
                    failures += (uint64_t)in_flight;
                }
                break;
            }
        }
        double wake = sending ? end : end + DRAIN_MS;
        if (sending && rate > 0)
        {
            for (double due; (due = due_ms(cursor / (uint64_t)concurrency, (int)(cursor % (uint64_t)concurrency))) <= now; cursor++)
            {
                worker_t *w = &workers[cursor % (uint64_t)concurrency];
                if (!w->busy && due_ms(w->k, w->index) <= now)
                {
                    send_call(w, due_ms(w->k, w->index)); // a busy worker sends when its answer comes
                }
            }
            double next = due_ms(cursor / (uint64_t)concurrency, (int)(cursor % (uint64_t)concurrency));
            wake = next < end ? next : end;
        }
        double wait = wake - now;
        if (wait < 0)
        {
            wait = 0;
        }
        if (!sending && wait > 100)
        {
            wait = 100; // re-check the calls in flight
        }
        struct timespec timeout = { .tv_sec = (time_t)(wait / 1000), .tv_nsec = (long)(wait > 0 ? (wait - (time_t)(wait / 1000) * 1000.0) * 1e6 : 0) };
        int ready = epoll_pwait2(ep, events, 512, &timeout, NULL);
        now = now_ms();
        for (int e = 0; e < ready; e++)
        {
            uint64_t tag = events[e].data.u64;
            if (tag & DEVICE_TAG)
            {
                int i = (int)(tag & 0xFFFFFFFF);
                if (on_device(&devices[i]) != 0)
                {
                    fprintf(stderr, "device %d (%s%d): connection closed by the server or unreadable packet\n", i, prefix, i);
                    return 1;
                }
            }
            else
            {
                on_worker(&workers[tag], now, now < end);
            }
        }
    }

    double elapsed = (now_ms() - start_ms) / 1000.0;
    getrusage(RUSAGE_SELF, &after);
    double cpu_us = (after.ru_utime.tv_sec - before.ru_utime.tv_sec + after.ru_stime.tv_sec - before.ru_stime.tv_sec) * 1e6
        + (after.ru_utime.tv_usec - before.ru_utime.tv_usec + after.ru_stime.tv_usec - before.ru_stime.tv_usec);
    uint64_t answered = 0;
    for (int i = 0; i < device_count; i++)
    {
        answered += devices[i].answered;
        close(devices[i].fd);
    }
    printf("sent: %llu\n", (unsigned long long)sent);
    printf("round trips: %llu failures: %llu seconds: %.3f round trips/s: %.0f\n", (unsigned long long)round_trips,
        (unsigned long long)failures, elapsed, round_trips / elapsed);
    if (round_trips > 0)
    {
        printf("latency ms: p50 %.2f p90 %.2f p99 %.2f p99.9 %.2f max %.2f\n", percentile(round_trips, 0.5), percentile(round_trips, 0.9),
            percentile(round_trips, 0.99), percentile(round_trips, 0.999), percentile(round_trips, 0.999999));
        printf("client CPU us per round trip: %.2f\n", cpu_us / round_trips);
    }
    printf("requests answered by devices: %llu\n", (unsigned long long)answered);
    for (int w = 0; w < concurrency; w++)
    {
        close(workers[w].fd);
    }
    return round_trips > 0 && failures == 0 ? 0 : 1;
}
