/*
 * mft_cfg — reads MFT_* environment variables against a program's table of
 * defaults. Read-only after start-up; no state of its own.
 */
#include "mft_cfg.h"
#include "mft_log.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

static const struct mft_cfg_var *find(const struct mft_cfg_var *vars, const char *name)
{
    for (; vars && vars->name; vars++)
        if (strcmp(vars->name, name) == 0)
            return vars;
    return NULL;
}

const char *mft_cfg_get(const struct mft_cfg_var *vars, const char *name)
{
    const char *v = getenv(name);
    if (v && *v)
        return v;
    const struct mft_cfg_var *var = find(vars, name);
    return var ? var->def : NULL;
}

int mft_cfg_size(const struct mft_cfg_var *vars, const char *name, unsigned long long *out)
{
    const char *v = mft_cfg_get(vars, name);
    if (!v)
        return -1;
    char *end;
    errno = 0;
    unsigned long long n = strtoull(v, &end, 10);
    unsigned long long mul = 1;
    switch (*end) {
    case 'k':
    case 'K':
        mul = 1ULL << 10;
        end++;
        break;
    case 'm':
    case 'M':
        mul = 1ULL << 20;
        end++;
        break;
    case 'g':
    case 'G':
        mul = 1ULL << 30;
        end++;
        break;
    default:
        break;
    }
    /* strtoull would take "-1" (as ULLONG_MAX), " 1" and a bare suffix ("M") */
    if (errno || *v < '0' || *v > '9' || *end || n > (~0ULL) / mul) {
        mft_error("config.invalid", "not a size", "variable", name, "value", v);
        return -1;
    }
    *out = n * mul;
    return 0;
}

int mft_cfg_long(const struct mft_cfg_var *vars, const char *name, long *out)
{
    const char *v = mft_cfg_get(vars, name);
    if (!v)
        return -1;
    char *end;
    errno = 0;
    long n = strtol(v, &end, 10);
    if (errno || end == v || *end || n < 0) {
        mft_error("config.invalid", "not a non-negative integer", "variable", name, "value", v);
        return -1;
    }
    *out = n;
    return 0;
}

void mft_cfg_usage(FILE *f, const char *usage, const struct mft_cfg_var *vars)
{
    fprintf(f, "%s\n\nEnvironment:\n", usage);
    for (; vars && vars->name; vars++)
        fprintf(f, "  %-28s %s%s%s%s\n", vars->name, vars->doc, vars->def ? " [default: " : "",
                vars->def ? vars->def : "", vars->def ? "]" : "");
}
