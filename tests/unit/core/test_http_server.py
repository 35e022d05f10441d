"""The bounded HTTP listener: slow headers cut, idle connections closed, a graceful drain."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from aiohttp import web

from adapters.core.http_server import BoundedAppRunner


async def _echo(request: web.Request) -> web.Response:
    body = await request.read()
    return web.Response(text=f"got {len(body)}")


@contextlib.asynccontextmanager
async def serving(
    *,
    header_timeout_s: float = 0.5,
    keepalive_timeout_s: float = 5.0,
    max_headers: int = 32,
    handler: Callable[[web.Request], Awaitable[web.Response]] = _echo,
) -> AsyncIterator[tuple[BoundedAppRunner, int]]:
    app = web.Application()
    app.router.add_post("/", handler)
    runner = BoundedAppRunner(
        app,
        header_timeout_s=header_timeout_s,
        keepalive_timeout_s=keepalive_timeout_s,
        max_line_bytes=2048,
        max_headers=max_headers,
    )
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = int(runner.addresses[0][1])
    try:
        yield runner, port
    finally:
        await runner.cleanup()


async def closed_after(reader: asyncio.StreamReader, limit_s: float) -> tuple[float, bytes]:
    """Seconds until the server closed the connection (and what it sent before)."""
    started = time.monotonic()
    data = await asyncio.wait_for(reader.read(), limit_s)
    return time.monotonic() - started, data


def request(body: bytes = b"hello", extra: bytes = b"") -> bytes:
    return b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n%s\r\n%s" % (
        len(body),
        extra,
        body,
    )


async def test_a_complete_request_is_answered() -> None:
    async with serving() as (_, port):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(request())
        await writer.drain()
        head = await asyncio.wait_for(reader.readuntil(b"got 5"), 2)
        assert head.startswith(b"HTTP/1.1 200")
        writer.close()


async def test_half_a_header_then_silence_is_cut_at_the_header_timeout() -> None:
    async with serving(header_timeout_s=0.5, keepalive_timeout_s=30) as (_, port):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"POST / HTTP/1.1\r\nHost: x\r\nX-Half: ")
        await writer.drain()
        took, _ = await closed_after(reader, 5)
        assert 0.4 < took < 2.0
        writer.close()


async def test_a_header_trickled_a_byte_at_a_time_is_cut() -> None:
    async with serving(header_timeout_s=0.6, keepalive_timeout_s=30) as (_, port):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        started = time.monotonic()
        closed = False
        for byte in request():
            try:
                writer.write(bytes([byte]))
                await writer.drain()
            except ConnectionError:
                closed = True
                break
            if reader.at_eof():
                closed = True
                break
            await asyncio.sleep(0.1)
            with contextlib.suppress(TimeoutError):
                if await asyncio.wait_for(reader.read(1), 0.001) == b"":
                    closed = True
                    break
        assert closed, "the trickling connection was never closed"
        assert time.monotonic() - started < 3.0
        writer.close()


async def test_a_connection_that_sends_nothing_is_closed_when_idle() -> None:
    async with serving(header_timeout_s=0.5, keepalive_timeout_s=0.8) as (_, port):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        took, data = await closed_after(reader, 5)
        assert data == b""
        assert 0.6 < took < 3.0
        writer.close()


async def test_keep_alive_reuse_then_idle_close() -> None:
    async with serving(header_timeout_s=0.5, keepalive_timeout_s=0.8) as (_, port):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        for _ in range(3):
            writer.write(request())
            await writer.drain()
            await asyncio.wait_for(reader.readuntil(b"got 5"), 2)
            # Well within the header timeout between requests: the connection is kept.
            await asyncio.sleep(0.3)
        took, _ = await closed_after(reader, 5)
        assert took < 3.0
        writer.close()


async def test_too_many_headers_get_a_400_not_a_hang() -> None:
    async with serving(max_headers=20) as (_, port):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        extra = b"".join(b"X-H%d: v\r\n" % i for i in range(40))
        writer.write(request(extra=extra))
        await writer.drain()
        _, data = await closed_after(reader, 5)
        assert data.startswith(b"HTTP/1.") and b" 400 " in data.split(b"\r\n")[0]
        writer.close()


async def test_a_header_line_too_long_gets_a_4xx() -> None:
    async with serving() as (_, port):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(request(extra=b"X-Long: " + b"a" * 5000 + b"\r\n"))
        await writer.drain()
        _, data = await closed_after(reader, 5)
        status = int(data.split(b" ")[1])
        assert 400 <= status < 500
        writer.close()


async def test_drain_keeps_accepting_during_the_delay_and_finishes_received_requests() -> None:
    gate = asyncio.Event()

    async def slow(request: web.Request) -> web.Response:
        body = await request.read()
        await gate.wait()
        return web.Response(text=f"done {len(body)}")

    async with serving(header_timeout_s=2, handler=slow) as (runner, port):
        # One request in progress, one whose body is still being uploaded.
        r1, w1 = await asyncio.open_connection("127.0.0.1", port)
        w1.write(request(b"first"))
        r2, w2 = await asyncio.open_connection("127.0.0.1", port)
        w2.write(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nhalf-")
        await asyncio.gather(w1.drain(), w2.drain())
        await asyncio.sleep(0.1)
        drain = asyncio.create_task(runner.drain(delay_s=0.5, grace_s=5))
        await asyncio.sleep(0.2)
        # During the delay a new connection is still accepted and served.
        r3, w3 = await asyncio.open_connection("127.0.0.1", port)
        w3.write(request(b"third"))
        await w3.drain()
        await asyncio.sleep(0.6)
        # Past the delay the listener is closed...
        with pytest.raises(OSError):
            await asyncio.open_connection("127.0.0.1", port)
        # ... but the upload that was under way still completes and is answered.
        w2.write(b"done!")
        await w2.drain()
        await asyncio.sleep(0.1)
        assert not drain.done()
        gate.set()
        for reader, text in ((r1, b"done 5"), (r2, b"done 10"), (r3, b"done 5")):
            head = await asyncio.wait_for(reader.readuntil(text), 3)
            assert head.startswith(b"HTTP/1.1 200")
        assert await asyncio.wait_for(drain, 3) is True
        for w in (w1, w2, w3):
            w.close()


async def test_drain_reports_requests_still_open_at_the_end_of_the_grace() -> None:
    gate = asyncio.Event()

    async def stuck(request: web.Request) -> web.Response:
        await gate.wait()
        return web.Response(text="late")

    async with serving(header_timeout_s=2, handler=stuck) as (runner, port):
        _, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(request())
        await writer.drain()
        await asyncio.sleep(0.1)
        started = time.monotonic()
        assert await runner.drain(delay_s=0, grace_s=0.5) is False
        assert time.monotonic() - started < 1.5
        writer.close()
        gate.set()


async def test_a_connection_accepted_just_before_the_listener_closes_is_still_served() -> None:
    async with serving(header_timeout_s=2) as (runner, port):
        drain = asyncio.create_task(runner.drain(delay_s=0.3, grace_s=5))
        await asyncio.sleep(0.2)
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        # The client sends its request only after the listener has closed.
        await asyncio.sleep(0.25)
        with pytest.raises(OSError):
            await asyncio.open_connection("127.0.0.1", port)
        writer.write(request())
        await writer.drain()
        head = await asyncio.wait_for(reader.readuntil(b"got 5"), 2)
        assert head.startswith(b"HTTP/1.1 200")
        writer.close()
        assert await asyncio.wait_for(drain, 3) is True
