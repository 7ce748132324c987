/*
 * loadstat — what the load generators (mft-as2load, mft-tlsload,
 * mft-egressload) share: a monotonic clock, strict number parsing and
 * latency percentiles.
 */
#ifndef MFT_BENCH_LOADSTAT_H
#define MFT_BENCH_LOADSTAT_H

#include <stddef.h>

/* Seconds on the monotonic clock. */
double bench_now_s(void);

/* A whole, non-negative decimal number. Returns 0, or -1 for anything else. */
int bench_parse_long(const char *s, long *out);

/* Sorts v[0..n) ascending. */
void bench_sort(double *v, size_t n);

/* The nearest-rank value at fraction p (0..1) of sorted[0..n); 0 when n = 0. */
double bench_percentile(const double *sorted, size_t n, double p);

#endif
