"""The page wire protocol's trust rules against a real tmemd (wire_trust_test.sh starts it):
mutual TLS refuses every peer that does not prove a tenant with the pages role; tenants reach
only their own pools, for every verb, without learning whether another's pool exists; idle and
silent connections are bounded; a client that never reads its replies cannot grow tmemd."""
import os
import re
import socket
import ssl
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.environ["R"], "tests", "testing"))
import wire_client as w  # noqa: E402

T, C = os.environ["T"], os.environ["C"]
TLS_PORT, PLAIN_PORT, PID = int(os.environ["WP"]), int(os.environ["WPL"]), int(os.environ["D"])
fails = 0


def check(cond, what):
    global fails
    print(("ok   " if cond else "FAIL ") + what, flush=True)
    if not cond:
        fails += 1


def creds(tenant, d=None):
    d = d or C
    return (f"{C}/ca.crt", f"{d}/{tenant}.crt", f"{d}/{tenant}.key")


def ctl(tenant, *args):
    out = subprocess.run([os.environ["CTL"], f"--server=127.0.0.1:{os.environ['P']}", "--timeout-ms=3000",
                          f"--tls-ca={C}/ca.crt", f"--tls-cert={C}/{tenant}.crt", f"--tls-key={C}/{tenant}.key",
                          *args], capture_output=True, text=True, check=True)
    return out.stdout.strip()


def refused_at_handshake(tls):
    try:
        c = w.Conn(TLS_PORT, tls)
        # TLS 1.3: the server's verdict on the client certificate arrives after the client's
        # handshake is done; the first read tells.
        c.send(w.hello())
        c.reply()
        return False
    except (ssl.SSLError, ConnectionError, EOFError, OSError):
        return True


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        return int(re.search(r"VmRSS:\s+(\d+)", f.read()).group(1))


def metric(name):
    import urllib.request
    text = urllib.request.urlopen(f"http://127.0.0.1:{os.environ['MP']}/metrics").read().decode()
    m = re.search("^" + re.escape(name) + r" (\S+)$", text, re.M)
    return float(m.group(1)) if m else None


# --- mutual TLS: who may speak ---
check(refused_at_handshake((f"{C}/ca.crt", None, None)), "no client certificate: refused")
check(refused_at_handshake((f"{C}/ca.crt", f"{T}/other/mallory.crt", f"{T}/other/mallory.key")),
      "a certificate from another CA: refused")
check(refused_at_handshake(creds("alice", f"{T}/expired")), "an expired certificate: refused")
carol = w.Conn(TLS_PORT, creds("carol"))
r = carol.call(w.hello())
check(r.status == w.UNAUTHENTICATED and r.flags & w.CLOSING and carol.closed(),
      f"a certificate of no configured tenant: UNAUTHENTICATED at HELLO and closed ({r.status} {r.message})")
dave = w.Conn(TLS_PORT, creds("dave"))
r = dave.call(w.hello())
check(r.status == w.PERMISSION_DENIED, f"a tenant without the pages role: PERMISSION_DENIED ({r.message})")
alice = w.Conn(TLS_PORT, creds("alice"))
check(alice.hello() == "alice", "a valid certificate is served as its tenant")
plain = w.Conn(PLAIN_PORT)
check(plain.hello() == "local", "the loopback plaintext wire listener serves the local tenant")
try:
    c = w.Conn(TLS_PORT)  # plaintext bytes at the TLS listener
    c.send(w.hello())
    c.reply()
    check(False, "a plaintext client was answered by the TLS wire listener")
except (ConnectionError, EOFError, OSError, AssertionError):
    check(True, "a plaintext client gets no answer from the TLS wire listener")

# --- isolation: bob with alice's real pool ids ---
a_private = int(ctl("alice", "create-pool"))
a_shared = int(ctl("alice", "create-pool", "--shared-uuid=00112233445566778899aabbccddeeff"))
page = lambda tag, i: (tag * 4096)[:4096]  # noqa: E731
for pool in (a_private, a_shared):
    r = alice.call(w.put(1, pool, [("obj", i, page(bytes([65 + pool % 26]), i)) for i in range(4)]))
    check(r.status == w.OK, f"alice puts 4 pages into her pool {pool} over the wire")
bob = w.Conn(TLS_PORT, creds("bob"))
bob.hello()
missing = bob.call(w.handles(w.GET, 1, 999999, [("obj", 0)]))
for pool in (a_private, a_shared):
    want = missing.message.replace("999999", str(pool))
    for name, req in [("put", w.put(2, pool, [("obj", 0, b"X" * 4096)])),
                      ("get", w.handles(w.GET, 3, pool, [("obj", i) for i in range(4)])),
                      ("flush pages", w.handles(w.FLUSH_PAGES, 4, pool, [("obj", 0)])),
                      ("flush object", w.handles(w.FLUSH_OBJECT, 5, pool, [("obj", 0)])),
                      ("flush pool", w.flush_pool(6, pool))]:
        r = bob.call(req)
        check(r.status == w.NOT_FOUND and r.message == want and not r.body[:1] == b"\1",
              f"bob's {name} on alice's pool {pool}: NOT_FOUND in the words of a pool that does not exist")
r = alice.call(w.handles(w.GET, 7, a_shared, [("obj", i) for i in range(4)]))
check(r.status == w.OK and r.hits(4096) == [page(bytes([65 + a_shared % 26]), i) for i in range(4)],
      "every page of alice's shared pool is intact afterwards")
r = alice.call(w.handles(w.GET, 8, a_private, [("obj", i) for i in range(4)]))
check(r.status == w.OK and r.hits(4096) == [page(bytes([65 + a_private % 26]), i) for i in range(4)],
      "every page of alice's private pool is intact afterwards (and a hit removes it)")
r = plain.call(w.handles(w.GET, 9, a_shared, [("obj", 0)]))
check(r.status == w.OK, "the local tenant (loopback plaintext; an admin unless the tenants list says otherwise) "
                        "reaches every pool, as on gRPC")

# --- slowloris: silent connections hold nothing for long ---
silent = [socket.create_connection(("127.0.0.1", TLS_PORT)) for _ in range(200)]
t0 = time.monotonic()
late = w.Conn(TLS_PORT, creds("alice"))
late.hello()
check(time.monotonic() - t0 < 2, f"200 silent connections: a real client attaches in {time.monotonic() - t0:.2f} s")
time.sleep(float(os.environ["HANDSHAKE_S"]) + 0.5)
closed = 0
for s in silent:
    s.settimeout(0.5)
    try:
        closed += s.recv(1) == b""
    except (ConnectionError, socket.timeout):
        closed += 1
check(closed == 200, f"silent connections are closed after the handshake timeout ({closed} of 200)")
check((metric("tmem_wire_connections_timed_out_total") or 0) >= 200, "timed-out connections are counted")

# --- a client that never reads its replies ---
fill = w.Conn(PLAIN_PORT)
fill.hello()
shared = int(subprocess.run([os.environ["CTL"], f"--server=127.0.0.1:{os.environ['PL']}", "create-pool",
                             "--shared-uuid=ffeeddccbbaa99887766554433221100"],
                            capture_output=True, text=True, check=True).stdout)
r = fill.call(w.put(1, shared, [("o", i, bytes([i]) * 4096) for i in range(32)]))
check(r.status == w.OK, "32 pages put for the reader test")
before = rss_kib(PID)
gets_before = metric('tmem_wire_requests_total{verb="get"}')
greedy = w.Conn(PLAIN_PORT)
greedy.hello()
greedy.s.setblocking(False)
req = w.handles(w.GET, 2, shared, [("o", i) for i in range(32)])  # 128 KiB of reply each
sent = 0
deadline = time.monotonic() + 5
while time.monotonic() < deadline and sent < 4000:  # up to 512 MiB of replies asked for
    try:
        greedy.s.send(req)
        sent += 1
    except BlockingIOError:
        time.sleep(0.05)
time.sleep(0.5)
after = rss_kib(PID)
grown = (after - before) / 1024
answered = metric('tmem_wire_requests_total{verb="get"}') - gets_before
# What may be answered: the pending bound (1 MiB) plus what the sockets' buffers hold (up to
# tcp_wmem's 4 MiB and tcp_rmem's 32 MiB maxima), 128 KiB a reply: about 300 gets.
check(answered < 600, f"tmemd stops taking requests from a client that does not read its replies "
                      f"({answered:.0f} of {sent} gets answered)")
check(grown < 64, f"tmemd's RSS grew {grown:.1f} MiB (bound: 64) while {sent * 128 / 1024:.0f} MiB of replies "
                  "were asked for and never read")
other = w.Conn(PLAIN_PORT)
other.hello()
r = other.call(w.handles(w.GET, 3, shared, [("o", 1)]))
check(r.status == w.OK and r.hits(4096)[0] == bytes([1]) * 4096, "another client is served meanwhile")
greedy.close()

# libtmemclient over TLS with requests larger than it gathers records for at once (256 pages,
# 1 MiB): every page put comes back as put (tmemctl bench fails on a wrong page).
out = ctl("alice", "bench", "--transport=wire", "--threads=2", "--batch=256", "--pages=4096", "--seconds=1",
          "--singles=20")
check("(0 of 4096 dropped)" in out and "(0 misses)" in out and "page wire protocol" in out,
      f"large batches over TLS put and get every page: {out}")

# Every TLS 1.3 session above (libtmemclient's on GnuTLS, Python's on OpenSSL) had its records
# sealed and opened by tmemd's own record layer (tls.records: tmem, the default), none by GnuTLS's.
own = metric('tmem_wire_tls_sessions_total{records="tmem"}') or 0
gnutls = metric('tmem_wire_tls_sessions_total{records="gnutls"}') or 0
check(own >= 5 and gnutls == 0, f"TLS 1.3 sessions use tmemd's record layer ({own:.0f}; GnuTLS's: {gnutls:.0f})")

refused_tls = metric('tmem_auth_refused_total{listener="wire",reason="tls"}') or 0
check(refused_tls >= 3, f"refused wire handshakes are counted ({refused_tls:.0f})")
check((metric('tmem_auth_refused_total{listener="wire",reason="unknown_tenant"}') or 0) >= 1,
      "a certificate of no tenant is counted")
sys.exit(1 if fails else 0)
