/* ctl_send — the `mftctl send` command (see ctl_send.c). */
#ifndef CTL_SEND_H
#define CTL_SEND_H

#include "mft_cfg.h"

/* argv[0] = "send". Returns the process exit status (0, 1 error or not
 * delivered, 2 usage). */
int ctl_send(const struct mft_cfg_var *vars, int argc, char **argv);

#endif
