"""Reading a hook body within limits: the raw bytes, then its content coding, both capped.

Call `read_body` only after the request is authenticated: until then the gateway reads nothing,
so an unauthenticated client cannot make it inflate anything (the app turns off aiohttp's own
decompression for the same reason). The body must also arrive by a deadline the caller sets
from when its handler started: aiohttp would wait for a dripped body for ever.
"""

from __future__ import annotations

import asyncio
import zlib
from collections.abc import Sequence

import brotli
from aiohttp import StreamReader, hdrs, web

ACCEPTED_ENCODINGS = "gzip, deflate, br"
_READ_CHUNK = 65536
_GZIP_WBITS = 16 + zlib.MAX_WBITS
_ZLIB_WBITS = zlib.MAX_WBITS
_RAW_DEFLATE_WBITS = -zlib.MAX_WBITS
# brotli's `output_buffer_limit` is only honoured down to its first output block (just under
# 32 KiB, the size its own tests assert), so each step asks for at most that much: the inflated
# size can then pass the cap by less than one block, never by a doubling block.
BROTLI_BLOCK = 32768


class BodyError(Exception):
    """A hook body the gateway will not read or decode."""


class TooLarge(BodyError):
    """The raw or the inflated body is over the limit."""


class BodyTimeout(BodyError):
    """The body did not arrive by the deadline (a client dripping it holds a handler)."""


class UnsupportedEncoding(BodyError):
    """A content coding the gateway does not decode, or several stacked."""


class BadEncoding(BodyError):
    """The body is not valid data of its declared content coding."""


async def read_body(request: web.Request, limit: int, deadline: float) -> bytes:
    """The decoded body, at most `limit` bytes both as sent and once inflated.

    Raises TooLarge (declared, raw or inflated size), BodyTimeout (not all there by `deadline`,
    event loop time), then UnsupportedEncoding, then BadEncoding, in the contract's order.
    """
    if request.content_length is not None and request.content_length > limit:
        raise TooLarge
    try:
        async with asyncio.timeout_at(deadline):
            raw = await _read_raw(request.content, limit)
    except TimeoutError:
        raise BodyTimeout from None
    return decode(raw, request.headers.getall(hdrs.CONTENT_ENCODING, []), limit)


async def _read_raw(stream: StreamReader, limit: int) -> bytes:
    """Read the body as sent, stopping as soon as it is over `limit` (chunked bodies declare none)."""
    chunks: list[bytes] = []
    size = 0
    async for chunk in stream.iter_chunked(_READ_CHUNK):
        size += len(chunk)
        if size > limit:
            raise TooLarge
        chunks.append(chunk)
    return b"".join(chunks)


def decode(raw: bytes, content_encodings: Sequence[str], limit: int) -> bytes:
    """Undo the content coding named by the Content-Encoding header values, inflating <= `limit`."""
    codings = [c.strip().lower() for value in content_encodings for c in value.split(",")]
    codings = [c for c in codings if c and c != "identity"]
    if not codings:
        return raw
    if len(codings) > 1:
        # Okta sends no coding at all; a stack of them only multiplies the ways to hide a bomb.
        raise UnsupportedEncoding
    coding = codings[0]
    if coding in ("gzip", "x-gzip"):
        return _inflate_zlib(raw, _GZIP_WBITS, limit)
    if coding == "deflate":
        # RFC 9110 deflate is zlib-wrapped, but some clients send raw deflate; browsers take both.
        wbits = _ZLIB_WBITS if _has_zlib_header(raw) else _RAW_DEFLATE_WBITS
        return _inflate_zlib(raw, wbits, limit)
    if coding == "br":
        return _inflate_brotli(raw, limit)
    raise UnsupportedEncoding


def _has_zlib_header(raw: bytes) -> bool:
    """RFC 1950: method 8 in the low nibble and the two header bytes a multiple of 31."""
    return len(raw) >= 2 and raw[0] & 0x0F == 8 and ((raw[0] << 8) | raw[1]) % 31 == 0


def _inflate_zlib(raw: bytes, wbits: int, limit: int) -> bytes:
    """Inflate gzip/zlib/raw deflate, stopping one byte past `limit` (no more is ever produced)."""
    # Looked up on the module each time (not imported by name) so a test can count what it inflates.
    inflater = zlib.decompressobj(wbits)
    try:
        inflated = inflater.decompress(raw, limit + 1)
    except zlib.error as err:
        raise BadEncoding from err
    if len(inflated) > limit:
        raise TooLarge
    # Below the cap zlib has taken all input: anything left over is a truncated or padded stream.
    if inflater.unconsumed_tail or inflater.unused_data or not inflater.eof:
        raise BadEncoding
    return inflated


def _inflate_brotli(raw: bytes, limit: int) -> bytes:
    """Inflate brotli in steps of at most one output block, stopping once past `limit`."""
    inflater = brotli.Decompressor()
    parts: list[bytes] = []
    size = 0
    data = raw
    try:
        while True:
            step = min(limit - size + 1, BROTLI_BLOCK)
            part: bytes = inflater.process(data, output_buffer_limit=step)
            data = b""  # brotli keeps unprocessed input itself; later calls only drain output
            size += len(part)
            if size > limit:
                raise TooLarge
            parts.append(part)
            if inflater.is_finished():
                return b"".join(parts)
            if not part or inflater.can_accept_more_data():
                raise BadEncoding  # all input used and the stream did not end: truncated
    except brotli.error as err:
        raise BadEncoding from err
