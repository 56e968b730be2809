// Shared by load/native's tools: the monotonic clock, sorting and histogram percentiles, a blocking-style
// send, and the MQTT packets they send.
#pragma once
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <time.h>

static inline double now_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1e3 + t.tv_nsec / 1e6;
}

// qsort comparator for doubles (latencies).
static inline int compare_doubles(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

// The p-th percentile in ms of a histogram of `buckets` buckets of bucket_us µs holding `total` samples (the
// upper edge of the bucket holding the sample of rank total * p).
static inline double histogram_percentile(const uint32_t *histogram, int buckets, int bucket_us, uint64_t total, double p)
{
    uint64_t rank = (uint64_t)(total * p), seen = 0;
    for (int i = 0; i < buckets; i++)
    {
        seen += histogram[i];
        if (seen > rank)
        {
            return (i + 1) * bucket_us / 1000.0;
        }
    }
    return (double)buckets * bucket_us / 1000.0;
}

// Sends all of data on a non-blocking socket, retrying while the socket buffer is full for a moment (the
// callers bound what they have unsent); -1 when the socket failed.
static inline int write_all(int fd, const unsigned char *data, int length)
{
    int done = 0;
    while (done < length)
    {
        ssize_t n = send(fd, data + done, (size_t)(length - done), MSG_NOSIGNAL);
        if (n < 0)
        {
            if (errno == EAGAIN)
            {
                continue;
            }
            return -1;
        }
        done += (int)n;
    }
    return 0;
}

// CONNECT, MQTT 3.1.1, clean session, keep-alive 60 s, client id <id_prefix><i>, user name <prefix><i> (the
// device's access token). out needs 160 bytes; prefix at most 100 characters, so the packet stays under 128.
static inline int encode_connect(unsigned char *out, const char *id_prefix, const char *prefix, int index)
{
    char id[32], user[128];
    int idlen = snprintf(id, sizeof id, "%s%d", id_prefix, index);
    int userlen = snprintf(user, sizeof user, "%s%d", prefix, index);
    int n = 0;
    out[n++] = 0x10;
    out[n++] = (unsigned char)(10 + 2 + idlen + 2 + userlen);
    const unsigned char header[] = { 0, 4, 'M', 'Q', 'T', 'T', 4, 0x82, 0, 60 };
    memcpy(out + n, header, sizeof header);
    n += sizeof header;
    out[n++] = 0; out[n++] = (unsigned char)idlen; memcpy(out + n, id, (size_t)idlen); n += idlen;
    out[n++] = 0; out[n++] = (unsigned char)userlen; memcpy(out + n, user, (size_t)userlen); n += userlen;
    return n;
}

// SUBSCRIBE to one topic filter (packet id 1 unless given) at QoS qos. out needs filter length + 7 bytes; filter < 120 characters.
static inline int encode_subscribe(unsigned char *out, const char *filter, int packet_id, int qos)
{
    int len = (int)strlen(filter);
    int n = 0;
    out[n++] = 0x82;
    out[n++] = (unsigned char)(2 + 2 + len + 1);
    out[n++] = (unsigned char)(packet_id >> 8); out[n++] = (unsigned char)packet_id;
    out[n++] = (unsigned char)(len >> 8); out[n++] = (unsigned char)len;
    memcpy(out + n, filter, (size_t)len); n += len;
    out[n++] = (unsigned char)qos;
    return n;
}

// The remaining length (variable byte integer) of a fixed header: writes 1 to 4 bytes, returns how many.
static inline int encode_remaining_length(unsigned char *out, int value)
{
    int n = 0;
    do
    {
        unsigned char b = (unsigned char)(value & 0x7F);
        value >>= 7;
        out[n++] = (unsigned char)(value > 0 ? b | 0x80 : b);
    } while (value > 0 && n < 4);
    return n;
}

// Reads a fixed header from data[0..available): returns its length (2 to 5) and sets *remaining; 0 when more bytes are
// needed; -1 when the remaining length is malformed (more than 4 bytes).
static inline int decode_fixed_header(const unsigned char *data, int available, int *remaining)
{
    int value = 0, shift = 0;
    for (int i = 1; i < 5; i++)
    {
        if (i >= available)
        {
            return 0;
        }
        value |= (data[i] & 0x7F) << shift;
        shift += 7;
        if ((data[i] & 0x80) == 0)
        {
            *remaining = value;
            return i + 1;
        }
    }
    return -1;
}
