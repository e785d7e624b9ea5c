"""Prints N free tcp ports on 127.0.0.1 (default 1), one per line.

The ports lie below the kernel's ephemeral range, so no outgoing
connection can take one between this check and the daemon's bind; tests
running in parallel pick at random, so they rarely pick the same one.
"""
import random
import socket
import sys

n = int(sys.argv[1]) if len(sys.argv) > 1 else 1
try:
    with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
        low = int(f.read().split()[0])
except (OSError, ValueError, IndexError):
    low = 32768
if low <= 11000:
    low = 32768
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
