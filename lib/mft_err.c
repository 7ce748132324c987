/*
 * mft_err — the error taxonomy: names, default messages and remedies generated
 * from the one X-macro list in mft_err.h, plus helpers that fill a caller-owned
 * struct mft_err. Thread-safe: no state of its own; mft_err_openssl reads the
 * calling thread's OpenSSL error queue.
 */
#include "mft_err.h"

#include <openssl/err.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static const struct {
    const char *name, *message, *remedy;
} kinds[] = {
#define MFT_ERR_ROW_(name, msg, remedy) {#name, msg, remedy},
    MFT_ERR_KINDS(MFT_ERR_ROW_)
#undef MFT_ERR_ROW_
};

const char *mft_err_kind_name(enum mft_err_kind kind)
{
    if ((int)kind < 0 || kind >= MFT_E__COUNT)
        return "INTERNAL";
    return kinds[kind].name;
}

int mft_err_kind_from_name(const char *name)
{
    for (int i = 0; i < MFT_E__COUNT; i++)
        if (name && strcmp(kinds[i].name, name) == 0)
            return i;
    return -1;
}

void mft_err_clear(struct mft_err *err)
{
    if (err)
        memset(err, 0, sizeof(*err));
}

int mft_err_set(struct mft_err *err, enum mft_err_kind kind, const char *fmt, ...)
{
    if (!err)
        return -1;
    if ((int)kind < 0 || kind >= MFT_E__COUNT)
        kind = MFT_E_INTERNAL;
    err->kind = kind;
    err->detail[0] = '\0'; /* a new error: details are added after */
    if (fmt) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err->message, sizeof(err->message), fmt, ap);
        va_end(ap);
    } else {
        snprintf(err->message, sizeof(err->message), "%s", kinds[kind].message);
    }
    snprintf(err->remedy, sizeof(err->remedy), "%s", kinds[kind].remedy);
    return -1;
}

int mft_err_detail(struct mft_err *err, const char *fmt, ...)
{
    if (!err)
        return -1;
    size_t len = strlen(err->detail);
    if (len + 3 >= sizeof(err->detail))
        return -1;
    if (len > 0) {
        memcpy(err->detail + len, "; ", 3);
        len += 2;
    }
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err->detail + len, sizeof(err->detail) - len, fmt, ap);
    va_end(ap);
    return -1;
}

int mft_err_openssl(struct mft_err *err)
{
    unsigned long e;
    const char *file, *func, *data;
    int line, flags;
    while ((e = ERR_get_error_all(&file, &line, &func, &data, &flags)) != 0) {
        char buf[256];
        ERR_error_string_n(e, buf, sizeof(buf));
        if ((flags & ERR_TXT_STRING) && data && *data)
            mft_err_detail(err, "%s (%s)", buf, data);
        else
            mft_err_detail(err, "%s", buf);
    }
    return -1;
}

int mft_err_local_outage(enum mft_err_kind kind)
{
    return kind == MFT_E_STORE_UNAVAILABLE || kind == MFT_E_BUS_UNAVAILABLE ||
           kind == MFT_E_STORAGE || kind == MFT_E_NO_MEMORY;
}
