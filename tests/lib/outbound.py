#!/usr/bin/env python3
"""Joins what the sender and the receiver published, for the egress tests.

  outbound.py final STATUS.jsonl REQUEST_ID
      prints the final DeliveryUpdated of a request as JSON ("" when none)
  outbound.py states STATUS.jsonl REQUEST_ID
      prints the request's states in order, space-separated ("queued sending ...")
  outbound.py matrix STATUS.jsonl INBOUND.jsonl MANIFEST
      MANIFEST lines: "REQUEST_ID SHA256 MDN_MODE DESCRIPTION"; for each request
      checks: delivered; the receiver got it exactly once with the same
      Message-ID; the receiver's payload SHA-256 is the original's; the MIC the
      sender expected equals the MIC the receiver computed; a signed MDN was
      verified when one was asked for. Prints TAP lines ("ok - ..." /
      "not ok - ...").
  outbound.py count-received INBOUND.jsonl AS2_MESSAGE_ID
      how many MessageReceived events carry that Message-ID

Inputs are the JSON lines of `mftctl events TOPIC`.
"""
import json
import sys


def load(path):
    out = []
    with open(path) as f:
        for line in f:
            line = line.strip()
            if line.startswith('{'):
                rec = json.loads(line)
                if rec.get('event'):
                    out.append(rec)
    return out


def updates(status, rid):
    return [r['event'] for r in status
            if r['headers'].get('ce_type') == 'mft.delivery.updated.v1'
            and r['event'].get('request_id') == rid]


def final(status, rid):
    for ev in reversed(updates(status, rid)):
        if ev['state'] in ('delivered', 'failed'):
            return ev
    return None


def main():
    cmd = sys.argv[1]
    if cmd == 'final':
        ev = final(load(sys.argv[2]), sys.argv[3])
        print(json.dumps(ev) if ev else '')
    elif cmd == 'states':
        print(' '.join(ev['state'] for ev in updates(load(sys.argv[2]), sys.argv[3])))
    elif cmd == 'count-received':
        inbound = load(sys.argv[2])
        print(sum(1 for r in inbound if r['event'].get('as2_message_id') == sys.argv[3]))
    elif cmd == 'matrix':
        status, inbound = load(sys.argv[2]), load(sys.argv[3])
        by_mid = {}
        for r in inbound:
            by_mid.setdefault(r['event'].get('as2_message_id'), []).append(r['event'])
        for line in open(sys.argv[4]):
            rid, sha, mdn, desc = line.rstrip('\n').split(' ', 3)
            ev = final(status, rid)
            faults = []
            if not ev:
                faults.append('no final state')
            else:
                if ev['state'] != 'delivered':
                    err = ev.get('error') or {}
                    faults.append(f"{ev['state']} {err.get('kind')}: {err.get('message')} "
                                  f"({err.get('detail', '')[:200]})")
                got = by_mid.get(ev['as2_message_id'], [])
                if len(got) != 1:
                    faults.append(f'received {len(got)} times')
                else:
                    rx = got[0]
                    rsha = rx['payloads'][0]['sha256'] if rx.get('payloads') else ''
                    if rsha != sha:
                        faults.append(f'payload sha256 {rsha} != {sha}')
                    if rx.get('mic') != ev.get('mic'):
                        faults.append(f"MIC receiver {rx.get('mic')} != sender {ev.get('mic')}")
                if mdn != 'none' and not ev.get('mdn_signed'):
                    faults.append('signed MDN not verified')
            print(('not ok - ' if faults else 'ok - ') + desc +
                  (': ' + '; '.join(faults) if faults else ''))
    else:
        sys.exit(f'unknown command {cmd}')


if __name__ == '__main__':
    main()
