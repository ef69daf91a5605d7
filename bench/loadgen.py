"""A bounded load generator for loopback: N requests or S seconds, whichever comes first.

``python -m bench.loadgen URL --requests 1500 --concurrency 4 --seconds 20`` sends GETs from
``concurrency`` threads, each on its own keep-alive connection, and prints one JSON line: requests
sent, statuses, elapsed seconds and every latency. It refuses anything but a loopback host.
"""

from __future__ import annotations

import argparse
import http.client
import ipaddress
import json
import socket
import threading
import time
from urllib.parse import urlsplit


def _loopback(host: str) -> bool:
    try:
        return all(ipaddress.ip_address(info[4][0]).is_loopback for info in socket.getaddrinfo(host, None))
    except (OSError, ValueError):
        return False


def run(url: str, requests: int, concurrency: int, seconds: float) -> dict[str, object]:
    parts = urlsplit(url)
    if parts.scheme != "http" or not parts.hostname or not _loopback(parts.hostname):
        raise SystemExit(f"refusing {url}: the load generator only talks to http on loopback")
    host = parts.hostname
    target = parts.path + (f"?{parts.query}" if parts.query else "")
    deadline = time.monotonic() + seconds
    budget = iter(range(requests))
    lock = threading.Lock()
    latencies: list[float] = []
    statuses: dict[str, int] = {}

    def worker() -> None:
        connection = http.client.HTTPConnection(host, parts.port, timeout=10)
        try:
            while time.monotonic() < deadline:
                with lock:
                    if next(budget, None) is None:
                        return
                started = time.perf_counter()
                try:
                    connection.request("GET", target)
                    response = connection.getresponse()
                    response.read()
                    status = str(response.status)
                except (OSError, http.client.HTTPException) as error:
                    status = type(error).__name__
                    connection.close()
                    connection = http.client.HTTPConnection(host, parts.port, timeout=10)
                elapsed = time.perf_counter() - started
                with lock:
                    latencies.append(elapsed)
                    statuses[status] = statuses.get(status, 0) + 1
        finally:
            connection.close()

    started = time.perf_counter()
    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return {
        "requests": len(latencies),
        "statuses": statuses,
        "elapsed_s": time.perf_counter() - started,
        "latencies_s": latencies,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("url")
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=1)
    parser.add_argument("--seconds", type=float, default=20.0)
    arguments = parser.parse_args()
    print(json.dumps(run(arguments.url, arguments.requests, arguments.concurrency, arguments.seconds)))


if __name__ == "__main__":
    main()
