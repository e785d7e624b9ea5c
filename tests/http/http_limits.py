"""Hostile HTTP clients on raw sockets against a running parleyd.

Usage: http_limits.py PORT MAX_CONNECTIONS MAX_PER_IP

Checks, printing one "ok ..." line each and exiting 1 on the first failure:
  - a client trickling its headers byte by byte is cut off (the header
    timeout), and one trickling its body too (the body timeout), while
    other clients are served meanwhile,
  - the per-address cap and the global cap on connections (extra ones are
    closed without an answer; a slot freed is served again),
  - oversized headers are answered 431 (or reset).
Each part uses source addresses of its own (127.0.0.x), so that the
per-address cap of one part never counts another's connections.
"""
import socket
import sys
import threading
import time

PORT = int(sys.argv[1])
MAX_CONNS = int(sys.argv[2])
MAX_PER_IP = int(sys.argv[3])
HEALTHZ = b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n"


def fail(msg):
    print("FAIL: " + msg, flush=True)
    sys.exit(1)


def connect(src="127.0.0.1"):
    s = socket.socket()
    s.bind((src, 0))
    s.settimeout(20)
    s.connect(("127.0.0.1", PORT))
    return s


def read_response(s):
    """One HTTP response (headers + Content-Length body); b"" if the server
    closed the connection first."""
    data = b""
    while b"\r\n\r\n" not in data:
        try:
            chunk = s.recv(4096)
        except ConnectionResetError:
            return b""
        if not chunk:
            return b""
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":")[1])
    while len(rest) < length:
        chunk = s.recv(4096)
        if not chunk:
            break
        rest += chunk
    return head + b"\r\n\r\n" + rest


def served(s):
    try:
        s.sendall(HEALTHZ)
    except OSError:
        return False
    return read_response(s).startswith(b"HTTP/1.1 200")


def wait_served(src, what):
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        s = connect(src)
        if served(s):
            return s
        s.close()
        time.sleep(0.05)
    fail(what)


# --- slow loris -----------------------------------------------------------------------
results = {}


def trickle(name, src, prefix, drip, budget_s):
    """Sends prefix whole, then drip one byte every 0.25 s for at most
    budget_s; records how long until the server cut the connection, or None."""
    s = connect(src)
    start = time.monotonic()
    try:
        s.sendall(prefix)
        i = 0
        while time.monotonic() - start < budget_s:
            s.sendall(drip[i % len(drip):i % len(drip) + 1])
            i += 1
            time.sleep(0.25)
            s.setblocking(False)
            try:
                if s.recv(4096) == b"":
                    raise ConnectionResetError
            except BlockingIOError:
                pass
            finally:
                s.setblocking(True)
        results[name] = None
    except (ConnectionResetError, BrokenPipeError, OSError):
        results[name] = time.monotonic() - start
    s.close()


threads = [
    threading.Thread(target=trickle, args=(
        "headers", "127.0.0.10", b"GET /healthz HTTP/1.1\r\nHost: t\r\n", b"X-Slow: aaaaaaaaaaaa\r\n", 60)),
    threading.Thread(target=trickle, args=(
        "body", "127.0.0.11", b"POST /parley.v1.Rooms/ListRooms HTTP/1.1\r\nHost: t\r\n"
        b"Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n", b" ", 90)),
]
for t in threads:
    t.start()
time.sleep(1)
s = connect("127.0.0.12")
if not served(s):
    fail("a client was not served while two trickle")
s.close()
for t in threads:
    t.join()
if results["headers"] is None:
    fail("headers sent a byte at a time for 60 s were never cut off")
if results["body"] is None:
    fail("a body sent a byte at a time for 90 s was never cut off")
print("ok slow loris: trickled headers cut off after %.1f s, a trickled body after %.1f s"
      % (results["headers"], results["body"]), flush=True)

# --- caps ---------------------------------------------------------------------
# Connections closed a moment ago may still hold their slots until the
# server's threads finish with them: each held connection may wait for one.
held = []
for _ in range(MAX_PER_IP):
    held.append(wait_served("127.0.0.20", "a connection below the per-address cap was not served"))
extra = connect("127.0.0.20")
if served(extra):
    fail("connection %d from one address was served (cap %d)" % (MAX_PER_IP + 1, MAX_PER_IP))
extra.close()
print("ok connection %d from one address closed unanswered" % (MAX_PER_IP + 1), flush=True)

others = []
src = 21
while len(held) + len(others) < MAX_CONNS:
    others.append(wait_served("127.0.0.%d" % src, "connection %d (below the cap of %d) was not served"
                              % (len(held) + len(others) + 1, MAX_CONNS)))
    src += 1
extra = connect("127.0.0.%d" % src)
if served(extra):
    fail("connection %d was served (cap %d)" % (MAX_CONNS + 1, MAX_CONNS))
extra.close()
print("ok connection %d closed unanswered (cap %d)" % (MAX_CONNS + 1, MAX_CONNS), flush=True)

held.pop().close()
s = wait_served("127.0.0.20", "a freed slot was never served again")
s.close()
for s in held + others:
    s.close()
print("ok a freed slot is served again", flush=True)

# --- oversized headers ------------------------------------------------------------
# The server answers 431 and closes while the rest is still coming, so
# the kernel may reset the connection before the answer is read: either
# way nothing is served, and the server goes on.
probe = wait_served("127.0.0.30", "not served before the oversized headers")
s = connect("127.0.0.31")
try:
    s.sendall(b"GET /healthz HTTP/1.1\r\nHost: t\r\nX-Big: " + b"a" * (100 * 1024) + b"\r\n\r\n")
    resp = read_response(s)
except OSError:
    resp = b""
if resp and not resp.startswith(b"HTTP/1.1 431"):
    fail("100 KiB of headers: want 431 or a closed connection, got %r" % resp[:60])
s.close()
if not served(probe):
    fail("not served after 100 KiB of headers")
probe.close()
print("ok 100 KiB of headers: %s" % ("431" if resp else "connection closed"), flush=True)

