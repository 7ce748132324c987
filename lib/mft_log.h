/*
 * mft_log — structured logs: one JSON object per line on stderr.
 *
 * Every line carries time, level, service, event, and the source location; the
 * caller adds string key/value pairs (message_id, partner, error_kind ...),
 * terminated by NULL. Formatting is skipped when the level is off. Thread-safe
 * (one fputs per line). Never pass secrets: nothing here redacts.
 */
#ifndef MFT_LOG_H
#define MFT_LOG_H

enum mft_log_level { MFT_LOG_DEBUG, MFT_LOG_INFO, MFT_LOG_WARN, MFT_LOG_ERROR };

/* Sets the service name and the level from MFT_LOG_LEVEL (debug|info|warn|error). */
void mft_log_init(const char *service);

/* Returns non-zero when lines of this level are written. */
int mft_log_enabled(enum mft_log_level level);

/* Writes one line; the variadic part is key, value, key, value, ..., then a
 * null pointer, which the macros below add. A NULL value skips its key. */
void mft_log_write(enum mft_log_level level, const char *file, int line, const char *func,
                   const char *event, const char *msg, ...) __attribute__((sentinel));

/* mft_info("event.name", "message", "key", value, ...): no terminator needed. */
#define MFT_LOG_(lvl, event, ...)                                                                  \
    do {                                                                                           \
        if (mft_log_enabled(lvl))                                                                  \
            mft_log_write(lvl, __FILE__, __LINE__, __func__, event, __VA_ARGS__, (const char *)0); \
    } while (0)
#define mft_debug(event, ...) MFT_LOG_(MFT_LOG_DEBUG, event, __VA_ARGS__)
#define mft_info(event, ...) MFT_LOG_(MFT_LOG_INFO, event, __VA_ARGS__)
#define mft_warn(event, ...) MFT_LOG_(MFT_LOG_WARN, event, __VA_ARGS__)
#define mft_error(event, ...) MFT_LOG_(MFT_LOG_ERROR, event, __VA_ARGS__)

/* Logs an error and exits 1: for start-up failures and broken invariants only. */
void mft_fatal_at(const char *file, int line, const char *func, const char *event, const char *msg)
    __attribute__((noreturn));
#define mft_fatal(event, msg) mft_fatal_at(__FILE__, __LINE__, __func__, event, msg)

#endif
