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

/* Writes one line; the variadic part is key, value, key, value, ..., NULL.
 * A NULL value skips its key. Use the macros below. */
void mft_log_write(enum mft_log_level level, const char *file, int line, const char *func,
                   const char *event, const char *msg, ...) __attribute__((sentinel));

#define MFT_LOG_(lvl, event, msg, ...)                                                             \
    do {                                                                                           \
        if (mft_log_enabled(lvl))                                                                  \
            mft_log_write(lvl, __FILE__, __LINE__, __func__, event, msg, __VA_ARGS__);             \
    } while (0)
#define mft_debug(event, msg, ...) MFT_LOG_(MFT_LOG_DEBUG, event, msg, __VA_ARGS__)
#define mft_info(event, msg, ...) MFT_LOG_(MFT_LOG_INFO, event, msg, __VA_ARGS__)
#define mft_warn(event, msg, ...) MFT_LOG_(MFT_LOG_WARN, event, msg, __VA_ARGS__)
#define mft_error(event, msg, ...) MFT_LOG_(MFT_LOG_ERROR, event, msg, __VA_ARGS__)

/* Logs an error and exits 1: for start-up failures and broken invariants only. */
void mft_fatal_at(const char *file, int line, const char *func, const char *event, const char *msg)
    __attribute__((noreturn));
#define mft_fatal(event, msg) mft_fatal_at(__FILE__, __LINE__, __func__, event, msg)

#endif
