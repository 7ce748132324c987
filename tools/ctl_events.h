/* ctl_events — the `mftctl events` command (see ctl_events.c). */
#ifndef CTL_EVENTS_H
#define CTL_EVENTS_H

#include "mft_cfg.h"

/* argv[0] = "events". Returns the process exit status (0, 1 error, 2 usage). */
int ctl_events(const struct mft_cfg_var *vars, int argc, char **argv);

#endif
