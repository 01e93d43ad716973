#!/usr/bin/env python3
"""A TCP proxy that delays every chunk by a fixed time in each direction, keeping order: a stand-in
for network round-trip time where netem is unavailable.

    delay-proxy.py LISTEN_PORT TARGET_HOST TARGET_PORT ONE_WAY_DELAY_MS
"""
import asyncio, sys

listen_port, host, port, delay_ms = int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
DELAY = delay_ms / 1000.0


async def pump(reader, writer):
    loop = asyncio.get_running_loop()
    try:
        while True:
            data = await reader.read(1 << 16)
            if not data:
                break
            # Scheduled at a fixed offset from arrival, so chunks leave in the order they came.
            loop.call_later(DELAY, writer.write, data)
    finally:
        await asyncio.sleep(DELAY)
        writer.close()


async def handle(client_r, client_w):
    server_r, server_w = await asyncio.open_connection(host, port)
    await asyncio.gather(pump(client_r, server_w), pump(server_r, client_w))


async def main():
    server = await asyncio.start_server(handle, "127.0.0.1", listen_port)
    async with server:
        await server.serve_forever()


asyncio.run(main())
