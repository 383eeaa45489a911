"""An answer's body, read within a cap and inflated as it arrives.

httpx inflates each chunk that the network gives it whole, and only then can a
cap on the body look at it: a 64 KiB chunk of a gzip bomb is 64 MiB once
inflated, and one answer took 647 MB (1.2 GB for 16 in flight) before the cap
refused it. Here the raw bytes are read and inflated by zlib with a limit on
the output of each step, so the cap holds while inflating: an answer never
takes more memory than the cap of raw bytes plus the cap of inflated bytes.

The client asks for gzip and deflate only (ACCEPT_ENCODING), the two that
zlib inflates; an answer in any other encoding is malformed. A deflate answer
may be zlib-wrapped (RFC 9110) or raw, as some servers send it; httpx takes
both, and so does this.
"""

from __future__ import annotations

import zlib
from collections.abc import AsyncIterable, Mapping

from syncd.errors import MalformedResponse, excerpt

#: What the client says it accepts: exactly what `read_capped` can inflate.
ACCEPT_ENCODING = "gzip, deflate"

_WBITS = {"gzip": zlib.MAX_WBITS | 16, "deflate": zlib.MAX_WBITS}
_RAW_DEFLATE = -zlib.MAX_WBITS


class _TooLarge(Exception):
    pass


class _Inflater:
    """One answer's decoding: none, or zlib's, each step's output capped."""

    def __init__(self, encoding: str) -> None:
        self.encoding = encoding
        self._zlib = zlib.decompressobj(_WBITS[encoding]) if encoding in _WBITS else None
        self._fed = False

    def feed(self, data: bytes, body: bytearray, limit: int) -> None:
        """Append what `data` inflates to (at most `limit` bytes in all) to `body`."""
        if self._zlib is None:
            body += data
        elif not self._zlib.eof:  # what follows the end of the stream is ignored, as httpx does
            try:
                self._inflate(data, body, limit)
            except zlib.error:
                if self.encoding != "deflate" or self._fed or body:
                    raise
                self._zlib = zlib.decompressobj(_RAW_DEFLATE)
                self._inflate(data, body, limit)
            self._fed = True
        if len(body) > limit:
            raise _TooLarge

    def _inflate(self, data: bytes, body: bytearray, limit: int) -> None:
        assert self._zlib is not None
        while data and not self._zlib.eof:
            # One byte more than there is room for: enough to know the cap is passed.
            body += self._zlib.decompress(data, limit - len(body) + 1)
            if len(body) > limit:
                raise _TooLarge
            data = self._zlib.unconsumed_tail

    def finish(self) -> None:
        """Raise zlib.error if a compressed body stopped before its end."""
        if self._zlib is not None and self._fed and not self._zlib.eof:
            raise zlib.error("the compressed answer ends before its end")


async def read_capped(
    headers: Mapping[str, str],
    chunks: AsyncIterable[bytes],
    limit: int,
    username: str,
    method: str,
    path: str,
) -> bytes:
    """The inflated body of an answer as it arrives; MalformedResponse past `limit` bytes.

    `limit` bounds the raw bytes received and the inflated bytes alike.
    """
    declared = headers.get("Content-Length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise MalformedResponse(username, method, path, f"answer of {declared} bytes is too large")
    encoding = headers.get("Content-Encoding", "").strip().lower()
    if encoding not in ("", "identity", *_WBITS):
        detail = f"answer in an encoding that was not asked for: {excerpt(encoding)!r}"
        raise MalformedResponse(username, method, path, detail)
    inflater = _Inflater(encoding)
    body = bytearray()
    received = 0
    try:
        async for chunk in chunks:
            received += len(chunk)
            if received > limit:
                raise _TooLarge
            inflater.feed(chunk, body, limit)
        inflater.finish()
    except _TooLarge:
        detail = f"answer is too large (over {limit // 1024} KiB)"
        raise MalformedResponse(username, method, path, detail) from None
    except zlib.error as error:
        detail = f"unreadable answer: broken {encoding} encoding ({error})"
        raise MalformedResponse(username, method, path, detail) from None
    return bytes(body)
