/*
 * mft_time — the wall-clock formats every service writes: milliseconds since
 * the epoch (Redis scores and fields), RFC 3339 UTC with milliseconds (event
 * times) and the HTTP / RFC 5322 date (AS2 Date headers). Thread-safe.
 */
#ifndef MFT_TIME_H
#define MFT_TIME_H

#include <stddef.h>

/* Milliseconds since the epoch (CLOCK_REALTIME). */
long long mft_now_ms(void);

/* Writes ms as "2024-05-01T12:34:56.789Z" (needs 25 bytes) into out. */
void mft_rfc3339_ms(long long ms, char *out, size_t outlen);

/* Writes the current time as "Wed, 01 May 2024 12:34:56 GMT" into out. */
void mft_http_date(char *out, size_t outlen);

#endif
