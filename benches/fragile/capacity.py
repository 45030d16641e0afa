#!/usr/bin/env python3
"""The app's own capacity: `clients` threads send GET / back to back for `seconds` (one
connection a request, as both legacy servers close after each), and it prints requests a second.

    capacity.py PORT [clients] [seconds]
"""
import http.client
import sys
import threading
import time

port = int(sys.argv[1])
clients = int(sys.argv[2]) if len(sys.argv) > 2 else 4
seconds = float(sys.argv[3]) if len(sys.argv) > 3 else 3
done = [0] * clients
end = time.monotonic() + seconds


def run(i):
    while time.monotonic() < end:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        conn.request("GET", "/")
        if conn.getresponse().read() and True:
            done[i] += 1
        conn.close()


start = time.monotonic()
threads = [threading.Thread(target=run, args=(i,)) for i in range(clients)]
for t in threads:
    t.start()
for t in threads:
    t.join()
print(f"{sum(done) / (time.monotonic() - start):.0f}")
