#!/usr/bin/env python3
"""Queries the JSON lines printed by `mftctl events TOPIC`.

  events.py count  FIELD=VALUE...      number of events matching all filters
  events.py get    FIELD FIELD=VALUE... the field of the last matching event
  events.py json   FIELD=VALUE...      the last matching record, pretty

FIELD is a dotted path into the record ({"headers": {...}, "key": ...,
"event": {...}}), e.g. event.as2_message_id or headers.ce_type.
"""
import json
import sys


def get(rec, path):
    for part in path.split('.'):
        if isinstance(rec, dict):
            rec = rec.get(part)
        elif isinstance(rec, list) and part.isdigit() and int(part) < len(rec):
            rec = rec[int(part)]
        else:
            return None
    return rec


def main():
    cmd, args = sys.argv[1], sys.argv[2:]
    field = args.pop(0) if cmd == 'get' else None
    filters = [a.split('=', 1) for a in args]
    recs = [json.loads(line) for line in sys.stdin if line.strip().startswith('{')]
    hits = [r for r in recs if all(str(get(r, k)) == v for k, v in filters)]
    if cmd == 'count':
        print(len(hits))
    elif cmd == 'get':
        v = get(hits[-1], field) if hits else None
        print('' if v is None else (json.dumps(v) if isinstance(v, (dict, list)) else v))
    elif cmd == 'json':
        print(json.dumps(hits[-1] if hits else None, indent=2))


main()
