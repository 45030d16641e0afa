#!/usr/bin/env python3
"""A TCP relay that counts what the upstream sees: each connection from candor is passed to the
app on its own connection, and the relay keeps the most that the app had on its hands at once:
from the accept to the first bytes of the app's answer (its whole answer, for these small
responses; counting to the app's close instead would count a connection still closing in the
relay while candor has already sent the next request). Neither legacy server keeps connections
alive, so that is the most requests the app held at once, its accept backlog included.

    relay.py LISTEN_PORT APP_PORT STATS_FILE     # writes "max open" to STATS_FILE on SIGTERM
"""
import asyncio
import signal
import sys

open_now = 0
most = 0


async def pipe(reader, writer, answered=None):
    try:
        while data := await reader.read(65536):
            if answered:
                answered()
                answered = None
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        try:
            writer.write_eof()
        except (OSError, RuntimeError):
            pass


async def serve(client_r, client_w, app_port):
    try:
        await relay(client_r, client_w, app_port)
    except asyncio.CancelledError:
        # Connections still open when the relay stops: nothing left to count.
        pass


async def relay(client_r, client_w, app_port):
    global open_now, most
    open_now += 1
    most = max(most, open_now)
    try:
        app_r, app_w = await asyncio.open_connection("127.0.0.1", app_port)
    except OSError:
        open_now -= 1
        client_w.close()
        return
    upstream = asyncio.ensure_future(pipe(client_r, app_w))
    busy = [True]

    def answered():
        global open_now
        if busy[0]:
            busy[0] = False
            open_now -= 1

    await pipe(app_r, client_w, answered)
    answered()
    upstream.cancel()
    for w in (client_w, app_w):
        w.close()


async def main():
    listen, app_port, stats = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
    server = await asyncio.start_server(lambda r, w: serve(r, w, app_port), "127.0.0.1", listen,
                                        backlog=4096)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    async with server:
        await stop.wait()
    with open(stats, "w") as f:
        f.write(f"{most}\n")


asyncio.run(main())
