#!/usr/bin/env python3
"""Holds N idle keep-alive connections to HOST:PORT for bench/idle-conns.sh.

    idle_client.py PORT N MODE HOLD_SECONDS     MODE: http1 | tls | h2c | silent

Each connection sends one GET /, reads the whole response, then stays open and
idle (an h2c connection answers the server's PINGs). Prints "ready OK FAILED"
once all have been tried, then holds them for HOLD_SECONDS (the script stops it
by its PID once it has measured). A `silent` connection sends nothing at all.
Loopback only; at most 200 opened at once.
"""
import asyncio
import ssl
import sys

HOST = "127.0.0.1"
H2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"


def frame(kind, flags, stream, payload=b""):
    return len(payload).to_bytes(3, "big") + bytes([kind, flags]) + stream.to_bytes(4, "big") + payload


async def read_frame(reader):
    head = await reader.readexactly(9)
    length = int.from_bytes(head[:3], "big")
    return head[3], head[4], int.from_bytes(head[5:9], "big") & 0x7FFFFFFF, await reader.readexactly(length)


async def http1(reader, writer):
    writer.write(b"GET / HTTP/1.1\r\nHost: idle.test\r\n\r\n")
    await writer.drain()
    head = await reader.readuntil(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1.1 200"):
        raise RuntimeError(head[:40])
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":", 1)[1])
    await reader.readexactly(length)


async def h2c(reader, writer):
    # :method GET, :scheme http, :path / from HPACK's static table; :authority literal.
    block = b"\x82\x86\x84\x41" + bytes([len(b"idle.test")]) + b"idle.test"
    writer.write(H2_PREFACE + frame(4, 0, 0) + frame(1, 0x5, 1, block))
    await writer.drain()
    while True:
        kind, flags, stream, payload = await read_frame(reader)
        if kind == 4 and not flags & 1:
            writer.write(frame(4, 1, 0))
        elif kind == 6 and not flags & 1:
            writer.write(frame(6, 1, 0, payload))
        elif kind == 7:
            raise RuntimeError("GOAWAY")
        elif stream == 1 and kind in (0, 1) and flags & 1:
            return


async def keep_h2c(reader, writer):
    # Answers PINGs and SETTINGS while the connection idles.
    try:
        while True:
            kind, flags, _, payload = await read_frame(reader)
            if kind == 6 and not flags & 1:
                writer.write(frame(6, 1, 0, payload))
            elif kind == 4 and not flags & 1:
                writer.write(frame(4, 1, 0))
    except (asyncio.IncompleteReadError, ConnectionError):
        return


async def main():
    port, n, mode, hold = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], float(sys.argv[4])
    ctx = None
    if mode == "tls":
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        ctx.set_alpn_protocols(["http/1.1"])
    gate = asyncio.Semaphore(200)
    held, keepers = [], []
    failed = 0

    async def one():
        nonlocal failed
        async with gate:
            try:
                reader, writer = await asyncio.wait_for(
                    asyncio.open_connection(HOST, port, ssl=ctx, server_hostname="idle.test" if ctx else None), 30)
                if mode != "silent":
                    await asyncio.wait_for((h2c if mode == "h2c" else http1)(reader, writer), 30)
                held.append(writer)
                if mode == "h2c":
                    keepers.append(asyncio.ensure_future(keep_h2c(reader, writer)))
            except Exception as e:  # counted and reported, the run goes on
                failed += 1
                if failed <= 3:
                    print(f"connection failed: {e!r}", file=sys.stderr, flush=True)

    await asyncio.gather(*(one() for _ in range(n)))
    print(f"ready {len(held)} {failed}", flush=True)
    await asyncio.sleep(hold)
    for k in keepers:
        k.cancel()
    for w in held:
        w.close()


if __name__ == "__main__":
    asyncio.run(main())
