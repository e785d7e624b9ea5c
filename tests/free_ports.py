"""Prints N free tcp ports on 127.0.0.1 (default 1), one per line.
With --consecutive they are N neighbours (P, P+1, ...), as `parley --server
HOST:P` expects of the four public services.

The ports lie below the kernel's ephemeral range, so no outgoing
connection can take one between this check and the daemon's bind; tests
running in parallel pick at random, so they rarely pick the same one.
"""
import random
import socket
import sys

args = [a for a in sys.argv[1:] if a != "--consecutive"]
consecutive = "--consecutive" in sys.argv[1:]
n = int(args[0]) if args else 1
try:
    with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
        low = int(f.read().split()[0])
except (OSError, ValueError, IndexError):
    low = 32768
if low <= 11000:
    low = 32768
def free(port):
    s = socket.socket()
    try:
        s.bind(("127.0.0.1", port))
        return True
    except OSError:
        return False
    finally:
        s.close()

if consecutive:
    while True:
        base = random.randrange(10000, low - n)
        if all(free(base + i) for i in range(n)):
            print("\n".join(str(base + i) for i in range(n)))
            sys.exit(0)

chosen = []
while len(chosen) < n:
    port = random.randrange(10000, low)
    if port in chosen:
        continue
    s = socket.socket()
    try:
        s.bind(("127.0.0.1", port))
    except OSError:
        continue
    finally:
        s.close()
    chosen.append(port)
print("\n".join(str(p) for p in chosen))
