"""Reading an upstream's answer within a size cap, compressed or not, for every client we run.

Every directory, token server, key set and Okta org we call is outside our control (an AD FS a
customer runs, a TLS-intercepting proxy in front of Entra): none is trusted to answer small.
Sessions made by `capped_session` leave content codings to us (aiohttp's own inflation is
unbounded before 3.14.5), and `read_capped` reads at most `limit` bytes as sent and inflates
them with the hook's own capped decoder (`gateway.body.decode`), so no answer can hold memory
or the event loop for longer than `limit` bytes of work.

It lives beside `gateway.body` (the decoder it reuses) and imports nothing else of the gateway,
so plugins can use it as the building block it is.
"""

from __future__ import annotations

from typing import Any

import aiohttp
from aiohttp import hdrs

from gateway.body import ACCEPTED_ENCODINGS, BadEncoding, TooLarge, UnsupportedEncoding, decode

__all__ = ["ResponseTooLarge", "UpstreamBodyError", "capped_session", "read_capped"]

_READ_CHUNK = 65536


class UpstreamBodyError(Exception):
    """An answer the gateway will not hold or decode; its message names the cap, never content."""


class ResponseTooLarge(UpstreamBodyError):
    """The answer, as sent or once inflated, is over the client's cap."""


def capped_session(**options: Any) -> aiohttp.ClientSession:
    """A ClientSession that inflates nothing itself and offers only codings `read_capped` decodes.

    aiohttp would otherwise advertise whatever its installed extras decode (zstd, say), which
    the capped decoder refuses.
    """
    headers = dict(options.pop("headers", None) or {})
    headers.setdefault(hdrs.ACCEPT_ENCODING, ACCEPTED_ENCODINGS)
    return aiohttp.ClientSession(auto_decompress=False, headers=headers, **options)


async def read_capped(response: aiohttp.ClientResponse, limit: int) -> bytes:
    """The decoded body of `response`, at most `limit` bytes both as sent and once inflated.

    Raises ResponseTooLarge past the cap (the rest is never read: the connection is dropped),
    UpstreamBodyError for a coding that is unknown or not valid data of its kind.
    """
    declared = response.content_length
    if declared is not None and declared > limit:
        response.close()
        raise ResponseTooLarge(f"the answer declares {declared} bytes, over the {limit}-byte cap")
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.content.iter_chunked(_READ_CHUNK):
        size += len(chunk)
        if size > limit:
            response.close()  # a half-read answer must not go back to the pool
            raise ResponseTooLarge(f"the answer is over the {limit}-byte cap")
        chunks.append(chunk)
    try:
        return decode(b"".join(chunks), response.headers.getall(hdrs.CONTENT_ENCODING, []), limit)
    except TooLarge:
        raise ResponseTooLarge(f"the answer inflates to over the {limit}-byte cap") from None
    except UnsupportedEncoding:
        raise UpstreamBodyError(
            "the answer has a content coding the gateway does not decode"
        ) from None
    except BadEncoding:
        raise UpstreamBodyError("the answer is not valid data of its content coding") from None
