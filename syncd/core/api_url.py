"""Which API a remembered thing belongs to: the API URL in one normal form.

Everything syncd keeps per account (cached answers, not-kept records, a user's
backoff, email ownership) and every saved plan names the API it came from
(design.md section 4): answers of one API are never taken for another's. Two
spellings of one URL must name it alike, so it is kept in this form: the
scheme and host lower-cased, the port only when it is not the scheme's own,
the path without a trailing slash; no user, query or fragment.
"""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit

_DEFAULT_PORTS = {"http": 80, "https": 443}


def normal_api_url(url: str) -> str:
    """`url` in the one form a state keys its rows by: `HTTPS://Host:443/x/` → `https://host/x`."""
    parts = urlsplit(url.strip())
    scheme = parts.scheme.lower()
    host = (parts.hostname or "").lower()
    if ":" in host:  # an IPv6 address keeps its brackets
        host = f"[{host}]"
    port = parts.port
    netloc = host if port is None or port == _DEFAULT_PORTS.get(scheme) else f"{host}:{port}"
    return urlunsplit((scheme, netloc, parts.path.rstrip("/"), "", ""))
