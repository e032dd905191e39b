"""Writer and checker for the cached export's kill -9 test (nbd_cache_test.sh).

  cache_crash.py write STATE URI SECONDS SEED   write versioned 4 KiB blocks (32 in flight) with
                                                 flushes at random points until SECONDS pass or
                                                 the server goes away; STATE records, per block,
                                                 every version sent and the newest one a
                                                 completed flush covered
  cache_crash.py verify STATE URI               every block must read back whole, as itself, a
                                                 version really sent and at least as new as the
                                                 flushed one; then STATE is reset to what is there

Each block holds (block number, version) repeated 256 times; version 0 is the zero block.
"""
import json
import random
import struct
import sys
import time

import nbd

BLOCK = 4096
IN_FLIGHT = 32


def stamp(block, version):
    return struct.pack("<QQ", block, version) * (BLOCK // 16)


def load(path, blocks):
    try:
        with open(path) as f:
            s = json.load(f)
        return {int(k): v for k, v in s["sent"].items()}, {int(k): v for k, v in s["flushed"].items()}, s["next"]
    except FileNotFoundError:
        return {}, {}, 1


def save(path, sent, flushed, nxt):
    with open(path, "w") as f:
        json.dump({"sent": sent, "flushed": flushed, "next": nxt}, f)


def write(state, uri, seconds, seed):
    h = nbd.NBD()
    h.connect_uri(uri)
    blocks = h.get_size() // BLOCK
    sent, flushed, version = load(state, blocks)
    rng = random.Random(seed)
    completed = {}        # block -> newest version whose write completed
    writes = {}           # cookie -> (block, version)
    flushes = {}          # cookie -> snapshot of `completed` when the flush was sent
    busy = set()          # blocks with a write in flight
    deadline = time.time() + seconds
    acked_writes = acked_flushes = 0
    try:
        while time.time() < deadline:
            while len(writes) + len(flushes) < IN_FLIGHT:
                if rng.random() < 0.03:
                    flushes[h.aio_flush()] = dict(completed)
                    continue
                b = rng.randrange(blocks)
                if b in busy:
                    continue
                busy.add(b)
                sent.setdefault(b, [0]).append(version)
                writes[h.aio_pwrite(stamp(b, version), b * BLOCK)] = (b, version)
                version += 1
            h.poll(-1)
            for c in [c for c in writes if h.aio_command_completed(c)]:
                b, v = writes.pop(c)
                busy.discard(b)
                completed[b] = max(completed.get(b, 0), v)
                acked_writes += 1
            for c in [c for c in flushes if h.aio_command_completed(c)]:
                for b, v in flushes.pop(c).items():
                    flushed[b] = max(flushed.get(b, 0), v)
                acked_flushes += 1
    except nbd.Error as e:
        print(f"writer: connection ended: {e}", file=sys.stderr)
    save(state, sent, flushed, version)
    print(f"writer: {acked_writes} writes and {acked_flushes} flushes acknowledged", file=sys.stderr)


def verify(state, uri):
    h = nbd.NBD()
    h.connect_uri(uri)
    blocks = h.get_size() // BLOCK
    sent, flushed, nxt = load(state, blocks)
    bad = []
    durable = {}
    for first in range(0, blocks, 256):
        n = min(256, blocks - first)
        data = h.pread(n * BLOCK, first * BLOCK)
        for i in range(n):
            b = first + i
            blk = data[i * BLOCK:(i + 1) * BLOCK]
            got_b, got_v = struct.unpack_from("<QQ", blk)
            if got_b == 0 and got_v == 0 and blk == bytes(BLOCK):
                got_b = b
            elif blk != stamp(got_b, got_v):
                bad.append(f"block {b} is torn")
                continue
            if got_b != b:
                bad.append(f"block {b} holds block {got_b}'s data")
                continue
            if got_v < flushed.get(b, 0):
                bad.append(f"block {b} lost flushed version {flushed[b]} (reads {got_v})")
            if got_v not in sent.get(b, [0]):
                bad.append(f"block {b} holds version {got_v}, never sent")
            durable[b] = got_v
    for line in bad[:20]:
        print("FAIL " + line)
    if bad:
        sys.exit(1)
    # What is there now is the durable state the next cycle starts from.
    sent = {b: [v] for b, v in durable.items() if v}
    flushed = {b: v for b, v in durable.items() if v}
    save(state, sent, flushed, nxt)
    print(f"verify: {blocks} blocks, {len(flushed)} written ones as new as their last flush or newer")


if __name__ == "__main__":
    if sys.argv[1] == "write":
        write(sys.argv[2], sys.argv[3], float(sys.argv[4]), int(sys.argv[5]))
    elif sys.argv[1] == "verify":
        verify(sys.argv[2], sys.argv[3])
    else:
        sys.exit(f"usage: {sys.argv[0]} write STATE URI SECONDS SEED | verify STATE URI")
