"""An aiohttp service with endpoints that block its loop the ways real handlers do.

    aiohttp_app.py OUT_DIR [--uvloop]

/ping answers at once; /sleep calls time.sleep(0.25) (a sync client in an async handler);
/cpu crunches 0.3 s with generator expressions; /big builds and serialises a large JSON
response (web.json_response calls json.dumps in the handler). See oracle.py for what it
measures about itself.
"""

import asyncio
import socket
import sys
import time

from aiohttp import web

import oracle

OUT = sys.argv[1]
ROWS = [{"id": i, "name": "row %d" % i, "tags": ["a", "b", "c"], "score": i * 0.5} for i in range(150000)]


async def ping(request):
    return web.Response(text="pong")


async def sleep(request):
    oracle.served("sleep")
    time.sleep(0.25)
    return web.Response(text="slept")


def crunch(seconds):
    t0 = time.monotonic()
    n = 0
    while time.monotonic() - t0 < seconds:
        n += sum(i * i for i in range(300))
    return n


async def cpu(request):
    oracle.served("cpu")
    return web.Response(text=str(crunch(0.3)))


async def big(request):
    oracle.served("big")
    return web.json_response({"rows": ROWS})


async def on_startup(app):
    oracle.start(asyncio.get_running_loop(), OUT)


def main():
    if "--uvloop" in sys.argv:
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    app = web.Application()
    app.router.add_get("/ping", ping)
    app.router.add_get("/sleep", sleep)
    app.router.add_get("/cpu", cpu)
    app.router.add_get("/big", big)
    app.on_startup.append(on_startup)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    oracle.write_port(OUT, sock.getsockname()[1])
    web.run_app(app, sock=sock, print=None, access_log=None, handle_signals=True)


if __name__ == "__main__":
    main()
