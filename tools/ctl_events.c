/*
 * ctl_events — `mftctl events TOPIC`: reads a topic from the beginning with a
 * fresh consumer group and prints one JSON object per record: topic,
 * partition, offset, key, the CloudEvents headers and the decoded event
 * (mft_events). Without --follow it reads to the end of every partition and
 * stops (or after --count records, or --timeout-ms without a record); with
 * --follow it joins a fresh group and waits for new records until --count.
 */
#include "ctl_events.h"
#include "mft_bus.h"
#include "mft_cfg.h"
#include "mft_events.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static json_t *record_json(const struct mft_bus_record *rec)
{
    json_t *o = json_object(), *h = json_object();
    json_object_set_new(o, "topic", json_string(rec->topic ? rec->topic : ""));
    json_object_set_new(o, "partition", json_integer(rec->partition));
    json_object_set_new(o, "offset", json_integer(rec->offset));
    json_object_set_new(o, "key", json_string(rec->key ? rec->key : ""));
    for (size_t i = 0; i < rec->n_headers; i++)
        json_object_set_new(h, rec->headers[i][0], json_string(rec->headers[i][1]));
    json_object_set_new(o, "headers", h);
    const char *type = mft_bus_record_header(rec, "ce_type");
    json_t *ev = mft_event_to_json(type, rec->value, rec->value_len);
    json_object_set_new(o, "event", ev ? ev : json_null());
    return o;
}

int ctl_events(const struct mft_cfg_var *vars, int argc, char **argv)
{
    const char *topic = NULL;
    long timeout_ms = 3000, count = -1;
    int follow = 0;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--timeout-ms") == 0 && i + 1 < argc)
            timeout_ms = strtol(argv[++i], NULL, 10);
        else if (strcmp(argv[i], "--count") == 0 && i + 1 < argc)
            count = strtol(argv[++i], NULL, 10);
        else if (strcmp(argv[i], "--follow") == 0 || strcmp(argv[i], "-f") == 0)
            follow = 1;
        else if (!topic && argv[i][0] != '-')
            topic = argv[i];
        else {
            fprintf(stderr, "mftctl events: unexpected argument \"%s\"\n", argv[i]);
            return 2;
        }
    }
    if (!topic || timeout_ms <= 0) {
        fprintf(stderr, "usage: mftctl events TOPIC [--follow] [--count N] [--timeout-ms MS]\n");
        return 2;
    }
    struct mft_err err;
    struct mft_bus_consumer *c = NULL;
    mft_err_clear(&err);
    const char *brokers = mft_cfg_get(vars, "MFT_KAFKA_BROKERS");
    int opened = follow ? mft_bus_consumer_open(brokers, topic, NULL, &c, &err)
                        : mft_bus_consumer_open_all(brokers, topic, &c, &err);
    if (opened < 0) {
        fprintf(stderr, "mftctl: %s: %s %s\n", mft_err_kind_name(err.kind), err.message,
                err.detail);
        return 1;
    }
    int rc = 0;
    for (long n = 0; count < 0 || n < count; n++) {
        struct mft_bus_record rec;
        int got = mft_bus_consumer_poll(c, (int)timeout_ms, &rec, &err);
        if (got < 0) {
            fprintf(stderr, "mftctl: %s: %s %s\n", mft_err_kind_name(err.kind), err.message,
                    err.detail);
            rc = 1;
            break;
        }
        if (got == 0 && !follow)
            break;
        if (got == 0) {
            n--;
            continue;
        }
        json_t *o = record_json(&rec);
        char *line = json_dumps(o, JSON_COMPACT);
        if (line)
            puts(line);
        free(line);
        json_decref(o);
        mft_bus_record_free(&rec);
    }
    fflush(stdout);
    mft_bus_consumer_close(c);
    return rc;
}
