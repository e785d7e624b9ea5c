#!/usr/bin/env python3
"""Reads compose.yml for the tests that run it without Docker.

    compose.py FILE order                 services to start, dependencies first
    compose.py FILE argv SERVICE          its command line, one argument a line
                                          (entrypoint + command, as Docker runs it)
    compose.py FILE env SERVICE           its environment, NAME=VALUE a line
    compose.py FILE volumes SERVICE       VOLUME PATH [ro] a line
    compose.py FILE health SERVICE        its healthcheck command, one argument a line
    compose.py FILE depends SERVICE       the services it waits for, one a line
    compose.py FILE networks SERVICE      NETWORK [ALIAS...] a line
    compose.py FILE ports SERVICE         HOST_IP HOST_PORT CONTAINER_PORT a line
    compose.py FILE check                 the deployment rules (exit 1 naming each breach)

Only the subset of the compose format that Parley's file uses is read; a
key it does not know in a service (say, `pid` or `network_mode: host`) is
an error rather than silently ignored, so the tests never run something
other than what Docker would.
"""
import sys

import yaml

KNOWN = {"build", "image", "entrypoint", "command", "restart", "stop_grace_period", "init",
         "volumes", "networks", "ports", "healthcheck", "depends_on", "profiles",
         "stdin_open", "tty", "environment", "network_mode"}


def load(path):
    with open(path) as f:
        doc = yaml.safe_load(f)
    services = doc["services"]
    for name, svc in services.items():
        unknown = set(svc) - KNOWN
        if unknown:
            sys.exit(f"compose.py: service {name}: keys this test cannot honour: {sorted(unknown)}")
        if svc.get("network_mode") not in (None, "none"):
            sys.exit(f"compose.py: service {name}: network_mode {svc['network_mode']}")
    return doc


def as_list(v):
    if v is None:
        return []
    if isinstance(v, str):
        sys.exit(f"compose.py: '{v}': write commands as lists (no shell)")
    return [str(a) for a in v]


def argv(svc):
    return as_list(svc.get("entrypoint")) + as_list(svc.get("command"))


def env(svc):
    e = svc.get("environment") or {}
    if isinstance(e, list):
        return dict(x.split("=", 1) for x in e)
    return {k: "" if v is None else str(v) for k, v in e.items()}


def volumes(svc):
    out = []
    for v in svc.get("volumes") or []:
        parts = v.split(":")
        out.append((parts[0], parts[1], len(parts) > 2 and "ro" in parts[2].split(",")))
    return out


def networks(svc):
    n = svc.get("networks") or {}
    if isinstance(n, list):
        return {k: [] for k in n}
    return {k: list((v or {}).get("aliases") or []) for k, v in n.items()}


def depends(svc):
    d = svc.get("depends_on") or {}
    return {k: "service_started" for k in d} if isinstance(d, list) else \
        {k: v.get("condition", "service_started") for k, v in d.items()}


def ports(svc):
    out = []
    for p in svc.get("ports") or []:
        parts = str(p).split(":")
        if len(parts) != 3:
            out.append(("0.0.0.0", parts[0], parts[-1]))
        else:
            out.append(tuple(parts))
    return out


def order(services):
    done, out = set(), []

    def visit(name, path):
        if name in done:
            return
        if name in path:
            sys.exit(f"compose.py: dependency cycle through {name}")
        for dep in depends(services[name]):
            visit(dep, path + [name])
        done.add(name)
        out.append(name)

    for name, svc in services.items():
        if not svc.get("profiles"):
            visit(name, [])
    return out


def check(doc):
    """The rules of issue 13 and 14, as far as the file can show them."""
    services, nets = doc["services"], doc.get("networks") or {}
    errors = []
    if not (nets.get("backend") or {}).get("internal"):
        errors.append("network backend must be internal")
    internal_flags = ("--events-listen", "--room-events-listen", "--rooms-internal-listen")
    for name, svc in services.items():
        a, n = argv(svc), networks(svc)
        if svc.get("pid"):
            errors.append(f"{name}: shares a PID namespace")
        for host_ip, _, _ in ports(svc):
            if host_ip != "127.0.0.1":
                errors.append(f"{name}: port published on {host_ip}, not 127.0.0.1")
        if a[:1] == ["parleyd"]:
            check_cmd = as_list((svc.get("healthcheck") or {}).get("test"))
            if check_cmd[1:2] != ["parley"] and not (check_cmd[1:2] == ["curl"] and
                                                      check_cmd[-1].endswith("/healthz")):
                errors.append(f"{name}: no healthcheck by `parley health` (or /healthz)")
            for dep, cond in depends(svc).items():
                if cond == "service_started":
                    errors.append(f"{name}: depends on {dep} without waiting for it")
            internal_use = any(f in a for f in internal_flags + ("--room-events", "--rooms-internal"))
            if internal_use and "backend" not in n:
                errors.append(f"{name}: uses internal endpoints but is not on the backend network")
            if not internal_use and "backend" in n and "--services" in a and \
                    a[a.index("--services") + 1] == "gateway":
                errors.append(f"{name}: the gateway needs no backend network")
            for flag in internal_flags:
                if flag in a:
                    url = a[a.index(flag) + 1]
                    host = url.split("://", 1)[1].rsplit(":", 1)[0]
                    if not (url.startswith("inproc://") or
                            (url.startswith("tls+tcp://") and host in n.get("backend", []))):
                        errors.append(f"{name}: {flag} {url}: internal endpoints must be "
                                      "inproc:// or tls+tcp:// on a backend-only name")
                    if url.startswith("tls+tcp://") and "--tls-ca" not in a:
                        errors.append(f"{name}: {flag} without --tls-ca (mutual TLS)")
            published = {int(c.split("/")[0]) for _, _, c in ports(svc)}
            for flag in internal_flags:
                if flag in a and a[a.index(flag) + 1].startswith("tls+tcp://"):
                    port = int(a[a.index(flag) + 1].rsplit(":", 1)[1])
                    if port in published:
                        errors.append(f"{name}: internal port {port} is published")
        elif svc.get("profiles") and "backend" in n:
            errors.append(f"{name}: a client container on the backend network")
    store = services.get("store")
    if store is None or "messaging,history" not in argv(store):
        errors.append("no `store` service running messaging and history in one process")
    return errors


def main():
    doc = load(sys.argv[1])
    what, services = sys.argv[2], doc["services"]
    svc = services[sys.argv[3]] if len(sys.argv) > 3 else None
    if what == "order":
        print("\n".join(order(services)))
    elif what == "argv":
        print("\n".join(argv(svc)))
    elif what == "depends":
        print("\n".join(depends(svc)))
    elif what == "health":
        print("\n".join(as_list(svc["healthcheck"]["test"])[1:]))
    elif what == "env":
        print("\n".join(f"{k}={v}" for k, v in env(svc).items()))
    elif what == "volumes":
        print("\n".join(f"{v} {p}{' ro' if ro else ''}" for v, p, ro in volumes(svc)))
    elif what == "networks":
        print("\n".join(" ".join([k] + al) for k, al in networks(svc).items()))
    elif what == "ports":
        print("\n".join(" ".join(p) for p in ports(svc)))
    elif what == "check":
        errors = check(doc)
        for e in errors:
            print(f"compose.yml: {e}")
        sys.exit(1 if errors else 0)
    else:
        sys.exit(f"compose.py: unknown request {what}")


if __name__ == "__main__":
    main()
