import asyncio
import os
import random
import sys
import graph_truth  # stands in for the socket of CPython's test (same line numbers)
from string import ascii_lowercase, digits
SHORT_TIMEOUT = 3600  # from CPython's test support package, in the original

HOST = '127.0.0.1'
PORT = graph_truth.unused_port()
connections = 0; NUM_TASKS = 100  # the 3.15 test's 100 clients (3.14's: 1000)

# The truth is recorded once every client has signalled, and the loop has settled.
sock = graph_truth.Signal(count=NUM_TASKS, settle=1.0)
graph_truth.watchdog()

class EchoServerProtocol(asyncio.Protocol):
    def connection_made(self, transport):
        global connections
        connections += 1
        self.transport = transport

    def data_received(self, data):
        self.transport.write(data)
        self.transport.close()

async def echo_client(message):
    reader, writer = await asyncio.open_connection(HOST, PORT)
    writer.write(message.encode())
    await writer.drain()

    data = await reader.read(100)
    assert message == data.decode()
    writer.close()
    await writer.wait_closed()
    # Signal we are ready to sleep
    sock.sendall(b"ready")
    await asyncio.sleep(SHORT_TIMEOUT)

async def echo_client_spam(server):
    async with asyncio.TaskGroup() as tg:
        while connections < NUM_TASKS:
            msg = list(ascii_lowercase + digits)
            random.shuffle(msg)
            tg.create_task(echo_client("".join(msg)))
            await asyncio.sleep(0)
        # at least a 1000 tasks created. Each task will signal
        # when is ready to avoid the race caused by the fact that
        # tasks are waited on tg.__exit__ and we cannot signal when
        # that happens otherwise
    # at this point all client tasks completed without assertion errors
    # let's wrap up the test
    server.close()
    await server.wait_closed()

async def main():
    loop = asyncio.get_running_loop()
    server = await loop.create_server(EchoServerProtocol, HOST, PORT)
    async with server:
        async with asyncio.TaskGroup() as tg:
            tg.create_task(server.serve_forever(), name="server task")
            tg.create_task(echo_client_spam(server), name="echo client spam")

asyncio.run(main())
