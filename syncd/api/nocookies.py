"""A cookie jar that keeps no cookie, for the one HTTP client that serves every user.

The accounts API authenticates each call by its Authorization header. A cookie
that the server (or a load balancer before it) sets in answer to one user's
call must never travel with another user's calls, so none is kept. It also
spares httpx the cookie parsing of every answer. This is the way httpx's
maintainers suggest until it has an option of its own (httpx issue 1359).
"""

from __future__ import annotations

from http.cookiejar import Cookie, CookieJar
from typing import Any


class NoCookies(CookieJar):
    def extract_cookies(self, response: Any, request: Any) -> None:
        pass

    def set_cookie(self, cookie: Cookie) -> None:
        pass
