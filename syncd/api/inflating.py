"""An answer's body, read within a cap and inflated within it.

httpx inflates each chunk whole before a cap could look at it (a 64 KiB chunk
of a gzip bomb is 64 MiB inflated); here the raw bytes are read up to the cap
and zlib's output is capped too, so an answer never takes more than the cap of
raw plus the cap of inflated bytes. A deflate answer may be zlib-wrapped
(RFC 9110) or raw, as some servers send it.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING

from syncd.errors import MalformedResponse, excerpt

if TYPE_CHECKING:
    import httpx

#: Answers larger than this are refused: no user object or email list comes near it.
MAX_BODY_BYTES = 1024 * 1024
#: What the client says it accepts: exactly what `read_capped` can inflate.
ACCEPT_ENCODING = "gzip, deflate"

_WBITS = {"gzip": zlib.MAX_WBITS | 16, "deflate": zlib.MAX_WBITS}


async def read_capped(
    response: httpx.Response, username: str, method: str, path: str, scrub: Callable[[str], str]
) -> bytes:
    """The inflated body of `response`; MalformedResponse past the cap, raw or inflated."""
    malformed = partial(MalformedResponse, username, method, path)
    too_large = malformed(f"answer is too large (over {MAX_BODY_BYTES // 1024} KiB)")
    declared = response.headers.get("Content-Length", "")
    if declared.isascii() and declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        raise too_large
    said = response.headers.get("Content-Encoding", "")
    if (encoding := said.strip().lower()) not in ("", "identity", *_WBITS):
        raise malformed(f"answer in an encoding not asked for: {excerpt(scrub(said))!r}")
    raw = bytearray()
    async for chunk in response.aiter_raw():  # not httpx's decoding: it inflates whole chunks
        raw += chunk
        if len(raw) > MAX_BODY_BYTES:
            raise too_large
    if encoding not in _WBITS or not raw:
        return bytes(raw)
    try:
        body = _inflate(bytes(raw), encoding)
    except zlib.error as error:
        raise malformed(f"unreadable answer: broken {encoding} encoding ({error})") from None
    if len(body) > MAX_BODY_BYTES:
        raise too_large
    return body


def _inflate(raw: bytes, encoding: str) -> bytes:
    """At most the cap + 1 bytes of what `raw` inflates to: one more says the cap is passed."""
    inflater = zlib.decompressobj(_WBITS[encoding])
    try:
        body = inflater.decompress(raw, MAX_BODY_BYTES + 1)
    except zlib.error:
        if encoding != "deflate":
            raise
        inflater = zlib.decompressobj(-zlib.MAX_WBITS)  # raw deflate, as some servers send it
        body = inflater.decompress(raw, MAX_BODY_BYTES + 1)
    # What follows the end is ignored, as httpx does.
    if len(body) <= MAX_BODY_BYTES and not inflater.eof:
        raise zlib.error("the compressed answer ends before its end")
    return body
