"""A FastAPI service on uvicorn with endpoints that block its loop the ways real handlers do.

    fastapi_app.py OUT_DIR asyncio|uvloop

/ping answers at once; /sleep calls time.sleep(0.25) in an async endpoint; /cpu crunches
0.3 s with generator expressions; /big returns a large list of rows that FastAPI itself
encodes and serialises (jsonable_encoder + json.dumps in its response code, after the
endpoint returned: no application frame is on the stack then). Served by uvicorn's own
Server on a socket bound here (what uvicorn.run does with --fd). See oracle.py.
"""

import asyncio
import contextlib
import socket
import sys
import time

import uvicorn
from fastapi import FastAPI

import oracle

OUT = sys.argv[1]
LOOP = sys.argv[2] if len(sys.argv) > 2 else "asyncio"
ROWS = [{"id": i, "name": "row %d" % i, "tags": ["a", "b", "c"], "score": i * 0.5} for i in range(12000)]

@contextlib.asynccontextmanager
async def lifespan(app):
    oracle.start(asyncio.get_running_loop(), OUT)
    yield


app = FastAPI(lifespan=lifespan)


@app.get("/ping")
async def ping():
    return {"pong": True}


@app.get("/sleep")
async def sleep():
    oracle.served("sleep")
    time.sleep(0.25)
    return {"slept": True}


def crunch(seconds):
    t0 = time.monotonic()
    n = 0
    while time.monotonic() - t0 < seconds:
        n += sum(i * i for i in range(300))
    return n


@app.get("/cpu")
async def cpu():
    oracle.served("cpu")
    return {"n": crunch(0.3)}


@app.get("/big")
async def big():
    oracle.served("big")
    return ROWS


def main():
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    oracle.write_port(OUT, sock.getsockname()[1])
    config = uvicorn.Config(app, loop=LOOP, log_level="warning", access_log=False, timeout_keep_alive=1)
    uvicorn.Server(config).run(sockets=[sock])


if __name__ == "__main__":
    main()
