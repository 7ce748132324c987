/*
 * mft_cfg — configuration from MFT_* environment variables.
 *
 * Each program declares a table of struct mft_cfg_var {name, default, doc};
 * mft_cfg_get() returns the environment's value or the table's default, and
 * mft_cfg_usage() prints the table for --help. docs/config.md lists every
 * variable; a test fails when one is missing there.
 */
#ifndef MFT_CFG_H
#define MFT_CFG_H

#include <stdio.h>

struct mft_cfg_var {
    const char *name;
    const char *def; /* default for a local run; NULL = unset */
    const char *doc;
};

/* Returns getenv(name) when set and non-empty, else the default from vars
 * (NULL-terminated table), else NULL. The string is borrowed. */
const char *mft_cfg_get(const struct mft_cfg_var *vars, const char *name);

/* Parses a size ("64M", "1G", "4096") from the variable; returns 0 or -1 and
 * logs which variable is wrong. */
int mft_cfg_size(const struct mft_cfg_var *vars, const char *name, unsigned long long *out);

/* Parses a non-negative integer; returns 0 or -1. */
int mft_cfg_long(const struct mft_cfg_var *vars, const char *name, long *out);

/* Prints "usage" then the table (name, default, doc) to f. */
void mft_cfg_usage(FILE *f, const char *usage, const struct mft_cfg_var *vars);

/* Common variables shared by every service; programs append their own. */
#define MFT_CFG_COMMON                                                                             \
    {"MFT_REDIS_URL", "redis://127.0.0.1:6379/0", "Redis server (redis://host:port/db)"},          \
        {"MFT_REDIS_TIMEOUT_MS", "2000", "Redis connect and command timeout in milliseconds"},     \
        {"MFT_KAFKA_BROKERS", "127.0.0.1:9092", "Kafka bootstrap servers (host:port,...)"},        \
        {"MFT_MASTER_KEY", NULL,                                                                   \
         "64 hex digits: AES-256-GCM key that wraps private keys in Redis (required)"},            \
        {"MFT_LOG_LEVEL", "info", "debug | info | warn | error"},                                  \
    {                                                                                              \
        "MFT_PAYLOAD_DIR", "./.run/payloads", "payload store directory (shared volume)"            \
    }

#endif
