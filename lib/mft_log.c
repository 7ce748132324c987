/*
 * mft_log — JSON-lines logger on stderr. The service name and the level are
 * set once at start-up (mft_log_init) and only read afterwards, so any thread
 * may log. Each line is built in a local buffer and written with one fputs.
 */
#include "mft_log.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

static const char *log_service = "mft";
static enum mft_log_level log_level = MFT_LOG_INFO;
static const char *level_names[] = {"debug", "info", "warn", "error"};

void mft_log_init(const char *service)
{
    log_service = service;
    const char *lv = getenv("MFT_LOG_LEVEL");
    for (int i = 0; lv && i < 4; i++)
        if (strcasecmp(lv, level_names[i]) == 0)
            log_level = (enum mft_log_level)i;
}

int mft_log_enabled(enum mft_log_level level)
{
    return level >= log_level;
}

struct buf {
    char data[4096];
    size_t len;
};

static void put(struct buf *b, const char *s, size_t n)
{
    if (b->len + n >= sizeof(b->data) - 3)
        n = sizeof(b->data) - 3 - b->len;
    memcpy(b->data + b->len, s, n);
    b->len += n;
}

static void put_json_string(struct buf *b, const char *s)
{
    put(b, "\"", 1);
    for (; s && *s; s++) {
        unsigned char c = (unsigned char)*s;
        char esc[8];
        if (c == '"' || c == '\\') {
            esc[0] = '\\';
            esc[1] = (char)c;
            put(b, esc, 2);
        } else if (c < 0x20) {
            snprintf(esc, sizeof(esc), "\\u%04x", c);
            put(b, esc, 6);
        } else {
            put(b, (const char *)&c, 1);
        }
    }
    put(b, "\"", 1);
}

static void put_field(struct buf *b, const char *key, const char *value)
{
    put(b, ",", 1);
    put_json_string(b, key);
    put(b, ":", 1);
    put_json_string(b, value);
}

void mft_log_write(enum mft_log_level level, const char *file, int line, const char *func,
                   const char *event, const char *msg, ...)
{
    struct buf b = {.len = 0};
    char ts[40], loc[256];
    struct timespec now;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &now);
    gmtime_r(&now.tv_sec, &tm);
    size_t n = strftime(ts, sizeof(ts), "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(ts + n, sizeof(ts) - n, ".%03ldZ", now.tv_nsec / 1000000);
    put(&b, "{\"time\":", 8);
    put_json_string(&b, ts);
    put_field(&b, "level", level_names[level]);
    put_field(&b, "service", log_service);
    put_field(&b, "event", event);
    if (msg)
        put_field(&b, "msg", msg);
    va_list ap;
    va_start(ap, msg);
    for (;;) {
        const char *key = va_arg(ap, const char *);
        if (!key)
            break;
        const char *value = va_arg(ap, const char *);
        if (value)
            put_field(&b, key, value);
    }
    va_end(ap);
    const char *base = strrchr(file, '/');
    snprintf(loc, sizeof(loc), "%s:%d %s", base ? base + 1 : file, line, func);
    put_field(&b, "src", loc);
    put(&b, "}\n", 2);
    b.data[b.len] = '\0';
    fputs(b.data, stderr);
}

void mft_fatal_at(const char *file, int line, const char *func, const char *event, const char *msg)
{
    mft_log_write(MFT_LOG_ERROR, file, line, func, event, msg, (const char *)0);
    exit(1);
}
