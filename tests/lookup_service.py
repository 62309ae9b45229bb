"""A small HTTP/1.1 lookup service for the tests and the load test of
sample-python-lookup: answers GET <path>?key=K with {"value": "user-K"}
(or "anonymous") after --delay-ms, keeping connections alive.

    lookup_service.py --port-file FILE [--port N] [--delay-ms MS]

Listens on 127.0.0.1 (port 0: any free one) and writes the port to FILE once
it accepts connections.
"""

import argparse
import asyncio
import json
import os
import urllib.parse


async def handle(reader, writer, delay):
    try:
        while True:
            request = await reader.readline()
            if not request:
                break
            while (await reader.readline()) not in (b"\r\n", b"\n", b""):
                pass
            target = request.split()[1].decode() if len(request.split()) > 1 else "/"
            query = urllib.parse.parse_qs(urllib.parse.urlsplit(target).query)
            key = query.get("key", [None])[0]
            if delay:
                await asyncio.sleep(delay)
            body = json.dumps({"value": f"user-{key}" if key else "anonymous"}).encode()
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
                         b"content-length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
            await writer.drain()
    except (ConnectionError, asyncio.IncompleteReadError):
        pass
    finally:
        writer.close()


async def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--port-file", required=True)
    ap.add_argument("--delay-ms", type=float, default=0.0)
    args = ap.parse_args()
    delay = args.delay_ms / 1000.0
    server = await asyncio.start_server(lambda r, w: handle(r, w, delay), "127.0.0.1", args.port,
                                        backlog=1024)
    port = server.sockets[0].getsockname()[1]
    tmp = args.port_file + ".tmp"
    with open(tmp, "w") as f:
        f.write(str(port))
    os.rename(tmp, args.port_file)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main())
