"""The NBD half of the soak (tests/soak/soak.sh): one connection to one export, writes (some with
FUA), reads and flushes with 16 requests in flight, checked against a per-sector model; on a lost
connection it reconnects and checks the whole export against what must have survived.

  soak_nbd.py --uri=nbd://H:P/NAME --id=N --restart-log=FILE [--seconds=S] [--seed=S]

Prints one JSON line (counts, violations) when it stops (SIGTERM, SIGINT or --seconds).

Every 512-byte sector holds (magic, export id, sector, version) repeated; version 0 is the zero
sector (the export starts zeroed). Versions grow with every write, and no two requests in flight
overlap, so per sector the model knows:
  latest   the newest acknowledged write
  flushed  the newest write a completed FLUSH (sent after the write completed) or FUA covered
  pending  every version sent since `flushed`, acknowledged or not
Checks:
  - while connected, every read returns `latest` for every sector (read-your-writes);
  - after a kill -9 restart, a sector holds `flushed` or one of `pending` (a write acknowledged
    before a completed FLUSH survives; later ones may be old or new, never anything else);
  - after a clean stop (SIGTERM: requests in flight finish, then every export is flushed,
    docs/nbd.md), a sector holds `latest` or a version whose request was in flight;
  - a connection lost without a restart is a violation (and is checked like a clean stop).
After a check it flushes, and what it read becomes the durable state. The orchestrator appends
"N kill" / "N term" to --restart-log before it starts the next tmemd.
"""
import argparse
import errno
import json
import random
import signal
import struct
import sys
import time

import nbd

SECTOR = 512
MAGIC = 0x4B4F53444E424F53
IN_FLIGHT = 16
ZERO = bytes(SECTOR)
MAX_KEPT = 50


def stamp(export_id, sector, version):
    if version == 0:
        return ZERO
    return struct.pack("<QQQQ", MAGIC, export_id, sector, version) * (SECTOR // 32)


class Lost(Exception):
    """The connection broke or a request failed: reconnect and check."""


class Soak:
    def __init__(self, args):
        self.a = args
        self.rng = random.Random(args.seed * 1000 + args.id)
        self.t0 = time.time()
        self.stop = False
        self.h = None
        self.lines = 0  # restart log lines applied
        self.version = 0
        self.c = dict(writes=0, fua_writes=0, reads=0, flushes=0, bytes_written=0, bytes_read=0,
                      verifies=0, reconnects=0, restarts_clean=0, restarts_kill=0, sectors_checked=0,
                      unflushed_lost_after_kill=0)
        self.violations = []
        self.violation_count = 0

    # --- the model -------------------------------------------------------------------------
    def init_model(self, size):
        self.nsect = size // SECTOR
        self.latest = [0] * self.nsect
        self.flushed = [0] * self.nsect
        self.pending = {}    # sector -> versions sent since `flushed`
        self.buffers = {}    # sectors -> nbd.Buffers of that size not in use (see the read path)
        self.completed = []  # (completion seq, first, n, version) not yet covered by a flush
        self.seq = 0

    def violation(self, kind, **detail):
        self.violation_count += 1
        if len(self.violations) < MAX_KEPT:
            v = dict(kind=kind, export=self.a.name, t=round(time.time() - self.t0, 1), **detail)
            self.violations.append(v)
            print(f"soak_nbd {self.a.name}: VIOLATION {json.dumps(v)}", file=sys.stderr, flush=True)

    def describe(self, chunk):
        if chunk == ZERO:
            return "version 0 (zeros)"
        magic, eid, sector, version = struct.unpack_from("<QQQQ", chunk)
        if magic != MAGIC or chunk != stamp(eid, sector, version):
            return "torn or corrupt: " + chunk[:32].hex()
        if eid != self.a.id:
            return f"export {eid}'s sector {sector} version {version}"
        return f"sector {sector} version {version}"

    def decode(self, s, chunk):
        """The version a sector holds, or None if it is not this sector's whole data."""
        if chunk == ZERO:
            return 0
        magic, eid, sector, version = struct.unpack_from("<QQQQ", chunk)
        if magic == MAGIC and eid == self.a.id and sector == s and chunk == stamp(eid, sector, version):
            return version
        return None

    def prune(self, s):
        p = self.pending.get(s)
        if p is not None:
            p = [v for v in p if v > self.flushed[s]]
            if p:
                self.pending[s] = p
            else:
                del self.pending[s]

    def make_durable(self, first, n, version):
        for s in range(first, first + n):
            if version > self.flushed[s]:
                self.flushed[s] = version
                self.prune(s)

    # --- traffic ---------------------------------------------------------------------------
    def pick(self, busy):
        r = self.rng.random()
        n = 1 if r < 0.2 else self.rng.randint(2, 8) if r < 0.5 else self.rng.randint(9, 64) if r < 0.8 \
            else self.rng.randint(65, 512)
        hot = min(self.nsect, 4096)  # 2 MiB that most requests hit: overwrites, partial lines
        span = hot if self.rng.random() < 0.75 else self.nsect
        n = min(n, span)
        first = self.rng.randrange(span - n + 1)
        if any(busy[first:first + n]):
            return None
        return first, n

    def run_connected(self, deadline):
        h = self.h
        inflight = {}  # cookie -> ("w", first, n, version, fua) | ("r", first, n, buf) | ("f", seq)
        busy = bytearray(self.nsect)
        fua_ok = h.can_fua()
        try:
            while True:
                done = self.stop or time.time() >= deadline
                while not done and len(inflight) < IN_FLIGHT:
                    r = self.rng.random()
                    if r < 0.04:
                        inflight[h.aio_flush()] = ("f", self.seq)
                        continue
                    p = self.pick(busy)
                    if p is None:
                        break
                    first, n = p
                    busy[first:first + n] = b"\1" * n
                    if r < 0.55:
                        self.version += 1
                        v = self.version
                        fua = fua_ok and self.rng.random() < 0.05
                        for s in range(first, first + n):
                            self.pending.setdefault(s, []).append(v)
                        data = b"".join(stamp(self.a.id, s, v) for s in range(first, first + n))
                        flags = nbd.CMD_FLAG_FUA if fua else 0
                        inflight[h.aio_pwrite(data, first * SECTOR, flags=flags)] = ("w", first, n, v, fua)
                    else:
                        # Reused: libnbd 1.14's Python binding never frees a Buffer handed to an
                        # aio command (a new one per read leaked ~0.7 GB a minute here).
                        free = self.buffers.setdefault(n, [])
                        buf = free.pop() if free else nbd.Buffer(n * SECTOR)
                        inflight[h.aio_pread(buf, first * SECTOR)] = ("r", first, n, buf)
                if done and not inflight:
                    return
                h.poll(-1)
                for cookie in [c for c in inflight if h.aio_command_completed(c)]:
                    op = inflight.pop(cookie)
                    if op[0] == "w":
                        _, first, n, v, fua = op
                        busy[first:first + n] = bytes(n)
                        for s in range(first, first + n):
                            self.latest[s] = v
                        self.seq += 1
                        self.completed.append((self.seq, first, n, v))
                        self.c["writes"] += 1
                        self.c["bytes_written"] += n * SECTOR
                        if fua:
                            self.c["fua_writes"] += 1
                            self.make_durable(first, n, v)
                    elif op[0] == "r":
                        _, first, n, buf = op
                        busy[first:first + n] = bytes(n)
                        self.check_read(first, n, buf.to_bytearray())
                        self.buffers[n].append(buf)
                        self.c["reads"] += 1
                        self.c["bytes_read"] += n * SECTOR
                    else:
                        # Every write that completed before the flush was sent is durable.
                        upto = op[1]
                        while self.completed and self.completed[0][0] <= upto:
                            _, first, n, v = self.completed.pop(0)
                            self.make_durable(first, n, v)
                        self.c["flushes"] += 1
        except nbd.Error as e:
            dead = True
            try:
                dead = h.aio_is_dead() or h.aio_is_closed()
            except nbd.Error:
                pass
            # ESHUTDOWN: tmemd is stopping (docs/nbd.md); the connection goes next.
            if not dead and e.errnum != errno.ESHUTDOWN:
                self.violation("request failed on a live connection", error=str(e))
            raise Lost(str(e))

    def check_read(self, first, n, data):
        bad = []
        for i in range(n):
            s = first + i
            chunk = bytes(data[i * SECTOR:(i + 1) * SECTOR])
            if chunk != stamp(self.a.id, s, self.latest[s]):
                bad.append(s)
        if bad:
            s = bad[0]
            i = s - first
            self.violation("read-your-writes", sector=s, sectors_wrong=len(bad),
                           want_version=self.latest[s], got=self.describe(bytes(data[i * SECTOR:(i + 1) * SECTOR])))

    # --- restarts --------------------------------------------------------------------------
    def connect(self, timeout):
        deadline = time.time() + timeout
        while True:
            try:
                h = nbd.NBD()
                h.connect_uri(self.a.uri)
                return h
            except nbd.Error:
                if time.time() >= deadline:
                    raise
                time.sleep(0.1)

    def new_restarts(self):
        """(clean, kill) restarts logged since the last call."""
        with open(self.a.restart_log) as f:
            lines = [l for l in f.read().splitlines() if l.strip()]
        new = lines[self.lines:]
        self.lines = len(lines)
        kill = sum(1 for l in new if "kill" in l)
        return len(new) - kill, kill

    def verify(self, mode, restarts):
        """Reads the whole export; mode "kill": flushed or pending; "clean": latest or unacknowledged."""
        h = self.h
        chunk_sectors = 2048
        bad = 0
        lost = 0
        read = [0] * self.nsect
        for first in range(0, self.nsect, chunk_sectors):
            n = min(chunk_sectors, self.nsect - first)
            data = h.pread(n * SECTOR, first * SECTOR)
            for i in range(n):
                s = first + i
                chunk = data[i * SECTOR:(i + 1) * SECTOR]
                base = self.flushed[s] if mode == "kill" else self.latest[s]
                if s not in self.pending and chunk == stamp(self.a.id, s, base):
                    read[s] = base
                    continue
                got = self.decode(s, chunk)
                allowed = {base} | {v for v in self.pending.get(s, ()) if v > base}
                if got is None or got not in allowed:
                    bad += 1
                    if bad <= 5:
                        why = ("a write acknowledged before a completed FLUSH (or with FUA) was lost"
                               if mode == "kill" else "an acknowledged write was lost across a clean stop")
                        if got is not None and got > max(allowed):
                            why = "a version newer than anything sent"
                        self.violation(f"after {mode} restart", sector=s, got=self.describe(chunk),
                                       allowed=sorted(allowed)[-8:], latest=self.latest[s], flushed=self.flushed[s],
                                       restart=restarts, why=why)
                    got = base if got is None else got
                elif got < self.latest[s]:
                    lost += 1  # an unflushed write rolled back: allowed after a kill
                read[s] = got
        self.c["verifies"] += 1
        self.c["sectors_checked"] += self.nsect
        if mode == "kill":
            self.c["unflushed_lost_after_kill"] += lost
        if bad > 5:
            self.violation(f"after {mode} restart", sectors_wrong=bad, restart=restarts)
        # What is there now becomes durable: flush, then it is the state the model starts from.
        h.flush()
        self.latest = read
        self.flushed = list(read)
        self.pending = {}
        self.completed = []

    def recover(self, worst):
        """Reconnects after a lost connection and checks the export. `worst`: the restart kinds
        seen so far while recovering ("kill" dominates)."""
        while True:
            self.h = None
            try:
                self.h = self.connect(120)
            except nbd.Error as e:
                self.violation("export did not come back", error=str(e))
                raise SystemExit(self.report(1))
            self.c["reconnects"] += 1
            clean, kill = self.new_restarts()
            self.c["restarts_clean"] += clean
            self.c["restarts_kill"] += kill
            if kill:
                worst = "kill"
            elif clean and worst != "kill":
                worst = "clean"
            if worst is None:
                self.violation("connection lost without a restart")
                worst = "clean"
            try:
                self.verify(worst, self.lines)
                return
            except nbd.Error:
                continue  # another restart during the check: check again, against the weaker rule

    def report(self, rc=None):
        out = dict(export=self.a.name, seconds=round(time.time() - self.t0, 1), **self.c,
                   violation_count=self.violation_count, violations=self.violations)
        print(json.dumps(out), flush=True)
        if rc is None:
            rc = 0 if self.violation_count == 0 else 1
        return rc

    def main(self):
        self.h = self.connect(60)
        self.init_model(self.h.get_size())
        self.new_restarts()  # lines before this process started are not its restarts
        deadline = self.t0 + self.a.seconds
        while True:
            try:
                self.run_connected(deadline)
            except Lost:
                self.recover(None)
                continue
            break
        # The end: everything acknowledged reads back, and stays after a flush.
        try:
            self.verify("final", self.lines)
        except nbd.Error as e:
            self.violation("final check failed", error=str(e))
        return self.report()


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--uri", required=True)
    p.add_argument("--name", required=True)
    p.add_argument("--id", type=int, required=True)
    p.add_argument("--restart-log", required=True)
    p.add_argument("--seconds", type=float, default=1e9)
    p.add_argument("--seed", type=int, default=1)
    soak = Soak(p.parse_args())

    def on_signal(*_):
        soak.stop = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    sys.exit(soak.main())


if __name__ == "__main__":
    main()
