/* ctl_tls — the `mftctl test-connection` command (see ctl_tls.c). */
#ifndef CTL_TLS_H
#define CTL_TLS_H

#include "mft_cfg.h"

#include <jansson.h>

/* argv[0] = "test-connection". Sets *json when -o json was asked for and
 * *view to what to print (a new reference, or NULL after a usage or set-up
 * error, already reported on stderr). Returns the exit status: 0 when the
 * handshake (and, with --http, the HTTP exchange) succeeded, 1 otherwise, 2
 * usage. */
int ctl_test_connection(const struct mft_cfg_var *vars, int argc, char **argv, int *json,
                        json_t **view);

#endif
