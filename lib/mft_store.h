/*
 * mft_store — the only module that talks to Redis (hiredis). Every key lives
 * under the "mft:" prefix; each pattern is listed in docs/redis-keys.md.
 *
 * Configuration records (stations, partners) are JSON documents whose schema
 * belongs to mft_registry / mftctl; this module stores them opaque, keeps the
 * AS2-id indexes and a configuration version that readers poll to reload.
 * Message state and duplicate-detection keys are written here too.
 *
 * A struct mft_store is one connection guarded by a mutex, so threads may share
 * it; a lost connection is re-established on the next call. Commands time out
 * (MFT_REDIS_TIMEOUT_MS, default 2000) and fail with MFT_E_STORE_UNAVAILABLE.
 */
#ifndef MFT_STORE_H
#define MFT_STORE_H

#include "mft_err.h"

#include <stddef.h>

struct mft_store;

/* Connects to url ("redis://host:port/db" or "redis://:password@host:port/db").
 * Returns 0 and *out, or -1 with MFT_E_STORE_UNAVAILABLE / MFT_E_CONFIG. */
int mft_store_open(const char *url, struct mft_store **out, struct mft_err *err);
void mft_store_close(struct mft_store *st); /* accepts NULL */

/* PING. Returns 0 when Redis answers. */
int mft_store_ping(struct mft_store *st, struct mft_err *err);

/* --- configuration ------------------------------------------------------ */

/* Writes mft:station:<id> = json and mft:idx:station-as2:<as2_id> = id, and
 * bumps mft:config:version, in one MULTI/EXEC. Returns 0 or -1. */
int mft_store_put_station(struct mft_store *st, const char *id, const char *as2_id,
                          const char *json, struct mft_err *err);

/* Writes mft:partner:<id> = json and mft:idx:partner-as2:<station_id>:<as2_id> = id,
 * adds id to mft:station:<station_id>:partners, bumps the version. */
int mft_store_put_partner(struct mft_store *st, const char *id, const char *station_id,
                          const char *as2_id, const char *json, struct mft_err *err);

/* Lists ids (sorted) of all stations / partners. *ids is a malloc'd array of
 * malloc'd strings; free with mft_store_free_list. */
int mft_store_list_stations(struct mft_store *st, char ***ids, size_t *n, struct mft_err *err);
int mft_store_list_partners(struct mft_store *st, char ***ids, size_t *n, struct mft_err *err);
void mft_store_free_list(char **ids, size_t n);

/* Reads the JSON of one record. Returns 0 and malloc'd *json, 1 when absent,
 * -1 on error. */
int mft_store_get_station(struct mft_store *st, const char *id, char **json, struct mft_err *err);
int mft_store_get_partner(struct mft_store *st, const char *id, char **json, struct mft_err *err);

/* Reads mft:config:version (0 when unset). Returns 0 or -1. */
int mft_store_config_version(struct mft_store *st, long long *version, struct mft_err *err);

/* --- messages ------------------------------------------------------------ */

/*
 * Duplicate detection: looks up mft:dup:<partner_id>:<sha256-hex(message_id)>.
 * Returns 1 and the stored message uuid in out (NUL-terminated) when present,
 * 0 when absent, -1 on error.
 */
int mft_store_dup_get(struct mft_store *st, const char *partner_id, const char *message_id,
                      char *out, size_t outlen, struct mft_err *err);

/*
 * The right to process one partner's Message-ID, so that copies of a message
 * arriving at the same time (a partner resending while the first copy is
 * still being received) are not all delivered: SET
 * mft:dup:<partner_id>:<sha256-hex(message_id)>:wip uuid NX PX lease_ms.
 * Returns 1 claimed, 0 another request holds it, -1 on error. Release it with
 * mft_store_dup_release once the message is recorded (or refused); the lease
 * frees it if the process dies.
 */
int mft_store_dup_claim(struct mft_store *st, const char *partner_id, const char *message_id,
                        const char *uuid, long lease_ms, struct mft_err *err);
int mft_store_dup_release(struct mft_store *st, const char *partner_id, const char *message_id,
                          const char *uuid, struct mft_err *err);

/*
 * Records a received message: HSET mft:msg:<uuid> with the given fields
 * (NULL-terminated key, value list; values are strings), ZADD
 * mft:msgs:<station_id> <received_ms> <uuid>, ZADD mft:msgs <received_ms> <uuid>,
 * and when dup_ttl_s > 0 SET mft:dup:<partner_id>:<sha256-hex(message_id)> uuid
 * EX dup_ttl_s — all in one MULTI/EXEC. Returns 0 or -1.
 */
int mft_store_message_put(struct mft_store *st, const char *uuid, const char *station_id,
                          const char *partner_id, const char *message_id, long long received_ms,
                          long dup_ttl_s, const char *const *fields, struct mft_err *err);

/* Reads field `field` of mft:msg:<uuid>. Returns 0 and malloc'd *value, 1 when
 * absent, -1 on error. */
int mft_store_message_field(struct mft_store *st, const char *uuid, const char *field, char **value,
                            struct mft_err *err);

/* Lists the newest `limit` message uuids (all stations when station_id is NULL). */
int mft_store_list_messages(struct mft_store *st, const char *station_id, size_t limit,
                            char ***uuids, size_t *n, struct mft_err *err);

/* Reads all fields of mft:msg:<uuid> as a NULL-terminated malloc'd key,value
 * array (free with mft_store_free_list(arr, count)). Returns 0, 1 absent, -1. */
int mft_store_message_get(struct mft_store *st, const char *uuid, char ***kv, size_t *count,
                          struct mft_err *err);

/* --- outgoing messages (egress; docs/redis-keys.md) ----------------------- */

/* Schedules of outgoing messages: sorted sets of uuids by due time (ms). */
#define MFT_STORE_OUT_RETRY "retry" /* mft:out:due:retry — next attempt, or a lease */
#define MFT_STORE_OUT_MDN "mdn"     /* mft:out:due:mdn — async MDN deadline */

/*
 * Claims a send request id (any text up to 1000 characters):
 * SET mft:out:req:<sha256 hex of request_id> <uuid> NX EX ttl_s.
 * Returns 1 when claimed (a new message), 0 when the request was seen before
 * (its uuid copied to existing), -1 on error.
 */
int mft_store_out_claim(struct mft_store *st, const char *request_id, const char *uuid, long ttl_s,
                        char *existing, size_t existing_len, struct mft_err *err);

/* What mft_store_out_put changes beside the fields, in the same MULTI/EXEC. */
struct mft_store_out_op {
    const char *station_id; /* with created_ms: ZADD mft:outs[:<station>] */
    long long created_ms;   /* > 0: list the message (first write) */
    const char *index_mid;  /* AS2 Message-ID: SET mft:out:mid:<sha256> uuid EX ttl */
    long index_ttl_s;
    const char *schedule; /* MFT_STORE_OUT_RETRY / _MDN: ZADD at due_ms */
    long long due_ms;
    const char *unschedule[2]; /* ZREM from these schedules */
    int unless_final;          /* apply only while the state is not delivered / failed
                                  (one script; created_ms and index_mid are then ignored) */
    const char *pending_event; /* RPUSH to mft:out:events in the same write: an event
                                  that must reach Kafka even if the publish fails */
};

#define MFT_STORE_OUT_EVENTS_KEY "mft:out:events"

/* HSET mft:out:<uuid> fields (NULL-terminated key, value list) and applies op
 * (may be NULL). Returns 0, 1 when op->unless_final skipped it, or -1. */
int mft_store_out_put(struct mft_store *st, const char *uuid, const char *const *fields,
                      const struct mft_store_out_op *op, struct mft_err *err);

/* HGETALL mft:out:<uuid> as a key,value list (free with mft_store_free_list).
 * Returns 0, 1 when absent, -1. */
int mft_store_out_get(struct mft_store *st, const char *uuid, char ***kv, size_t *count,
                      struct mft_err *err);

/* uuids in schedule whose due time is <= now_ms, oldest first, at most limit. */
int mft_store_out_due(struct mft_store *st, const char *schedule, long long now_ms, size_t limit,
                      char ***uuids, size_t *n, struct mft_err *err);

/*
 * Takes a due entry for lease_ms: atomically, when uuid's due time in
 * schedule is <= now_ms, moves it to now_ms + lease_ms (so a crashed taker's
 * work comes back) and returns 1; returns 0 when another worker took it or it
 * is gone, -1 on error.
 */
int mft_store_out_take(struct mft_store *st, const char *schedule, const char *uuid,
                       long long now_ms, long long lease_ms, struct mft_err *err);

/* Finds the outgoing message sent with AS2 Message-ID mid (as written, with
 * or without angle brackets). Returns 1 and its uuid, 0 when unknown, -1. */
int mft_store_out_by_mid(struct mft_store *st, const char *mid, char *uuid, size_t uuid_len,
                         struct mft_err *err);

/* The newest `limit` outgoing message uuids (all stations when NULL). */
int mft_store_list_out(struct mft_store *st, const char *station_id, size_t limit, char ***uuids,
                       size_t *n, struct mft_err *err);

/* The oldest `limit` entries of mft:out:events (events written with a state
 * change and not yet acknowledged by Kafka). Free with mft_store_free_list. */
int mft_store_out_events(struct mft_store *st, size_t limit, char ***entries, size_t *n,
                         struct mft_err *err);

/* Removes one entry from mft:out:events once Kafka acknowledged it. */
int mft_store_out_event_done(struct mft_store *st, const char *entry, struct mft_err *err);

/* Reads a field of a kv list as returned by mft_store_*_get ("" when absent). */
const char *mft_store_kv(char *const *kv, size_t count, const char *key);

#endif
