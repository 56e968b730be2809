// The disk's own latency for the writes the uplink log does (issue 12 target 5): COUNT sequential writes of
// BLOCK bytes to a new file opened O_SYNC, each timed alone; the file is deleted at the end. That is how FASTER's
// device opens the log with FSYNC_ON_COMMIT (the default): FileOptions.WriteThrough becomes O_SYNC, and .NET on
// Linux does not turn FASTER's no-buffering flag into O_DIRECT, so each write goes through the page cache and
// returns once it and the file's size are on the disk (a running server's uplink.log.0 shows flags 06110000 in
// /proc/<pid>/fdinfo). Run it next to a load (or two `while :; do :; done` loops) to see how the write's tail
// follows the CPU load on this VM (docs/PERFORMANCE.md).
// MODE direct is the fastest durable write a log could do on this disk instead: the file is first written with
// zeros and synced (so no write changes its size or allocates a block), then overwritten with O_DIRECT|O_DSYNC
// (no page cache, no metadata to journal). load/disk-floor.sh runs both beside the row-5 load.
//
// usage: disk-write FILE COUNT BLOCK [append|direct]   (BLOCK in bytes, e.g. 65536 or 102400; a multiple of
//        4096 for direct; MODE append by default)
// prints: block, count, mode, write latency ms p50/p90/p99/p99.9/max
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "mqtt-wire.h"

int main(int argc, char **argv)
{
    if (argc != 4 && argc != 5)
    {
        fprintf(stderr, "usage: %s FILE COUNT BLOCK [append|direct]\n", argv[0]);
        return 2;
    }
    int count = atoi(argv[2]), block = atoi(argv[3]);
    const char *mode = argc == 5 ? argv[4] : "append";
    int direct = strcmp(mode, "direct") == 0;
    if (count <= 0 || block <= 0)
    {
        fprintf(stderr, "COUNT must be positive and BLOCK a positive number of bytes\n");
        return 2;
    }
    if (!direct && strcmp(mode, "append") != 0)
    {
        fprintf(stderr, "MODE must be append or direct\n");
        return 2;
    }
    if (direct && block % 4096 != 0)
    {
        fprintf(stderr, "BLOCK must be a multiple of 4096 for direct\n");
        return 2;
    }

    void *buffer;
    double *latency = malloc(sizeof(double) * (size_t)count);
    if (posix_memalign(&buffer, 4096, (size_t)block) != 0 || latency == NULL)
    {
        fprintf(stderr, "out of memory\n");
        return 1;
    }

    int fd = open(argv[1], O_WRONLY | O_CREAT | O_EXCL | (direct ? 0 : O_SYNC), 0644);
    if (fd < 0)
    {
        perror(argv[1]);
        return 1;
    }
    if (direct)
    {
        // Zeros first, synced: the timed writes below then only overwrite allocated, written blocks.
        memset(buffer, 0, (size_t)block);
        for (int i = 0; i < count; i++)
        {
            if (write(fd, buffer, (size_t)block) != block)
            {
                perror("write");
                close(fd);
                unlink(argv[1]);
                return 1;
            }
        }
        if (fsync(fd) != 0 || close(fd) != 0 || (fd = open(argv[1], O_WRONLY | O_DIRECT | O_DSYNC)) < 0)
        {
            perror(argv[1]);
            unlink(argv[1]);
            return 1;
        }
    }
    memset(buffer, 0x5A, (size_t)block);

    int failed = 0;
    for (int i = 0; i < count; i++)
    {
        double started = now_ms();
        if (pwrite(fd, buffer, (size_t)block, (off_t)i * block) != block)
        {
            perror("pwrite");
            failed = 1;
            count = i;
            break;
        }
        latency[i] = now_ms() - started;
    }
    close(fd);
    unlink(argv[1]);
    if (count == 0)
    {
        return 1;
    }

    qsort(latency, (size_t)count, sizeof(double), compare_doubles);
    printf("block %d count %d mode %s: write ms p50 %.2f p90 %.2f p99 %.2f p99.9 %.2f max %.2f\n", block, count, mode,
        latency[count / 2], latency[count * 9 / 10], latency[count * 99 / 100], latency[count * 999 / 1000], latency[count - 1]);
    return failed;
}
