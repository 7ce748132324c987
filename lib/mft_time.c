/*
 * mft_time — wall-clock helpers shared by the services (see mft_time.h).
 * gmtime_r and strftime with the C locale only; no state.
 */
#include "mft_time.h"

#include <stdio.h>
#include <time.h>

long long mft_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void mft_rfc3339_ms(long long ms, char *out, size_t outlen)
{
    time_t s = (time_t)(ms / 1000);
    struct tm tm;
    gmtime_r(&s, &tm);
    size_t n = strftime(out, outlen, "%Y-%m-%dT%H:%M:%S", &tm);
    if (n < outlen)
        snprintf(out + n, outlen - n, ".%03lldZ", ms % 1000);
}

void mft_http_date(char *out, size_t outlen)
{
    time_t t = time(NULL);
    struct tm tm;
    gmtime_r(&t, &tm);
    if (strftime(out, outlen, "%a, %d %b %Y %H:%M:%S GMT", &tm) == 0 && outlen)
        out[0] = '\0';
}
