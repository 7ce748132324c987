/*
 * fuzz_events — libFuzzer harness for mft_event_to_json: the input is the
 * protobuf value of a Kafka record, rendered as each catalogued event type.
 * A rendering must be an object with every field of the message's descriptor
 * and must serialize to JSON that parses back. Seeds: tests/fuzz/corpus/events/
 * (packed MessageReceived and ConnectionRejected events).
 */
#include "mft_events.h"

#include <stdint.h>
#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    for (const struct mft_event_type *t = mft_event_types(); t->ce_type; t++) {
        json_t *j = mft_event_to_json(t->ce_type, data, size);
        if (!j)
            continue;
        if (!json_is_object(j) || json_object_size(j) != t->descriptor->n_fields)
            abort();
        char *s = json_dumps(j, JSON_COMPACT);
        if (!s)
            abort(); /* not serializable: e.g. a string that is not UTF-8 */
        json_t *back = json_loads(s, 0, NULL);
        if (!back || !json_equal(back, j))
            abort();
        json_decref(back);
        free(s);
        json_decref(j);
    }
    return 0;
}
