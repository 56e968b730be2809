// Shared by load/native's generators: the monotonic clock and the CONNECT they send.
#pragma once
#include <stdio.h>
#include <string.h>
#include <time.h>

static inline double now_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1e3 + t.tv_nsec / 1e6;
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
