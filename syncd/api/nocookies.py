"""A client that keeps no cookie, for the one HTTP client that serves every user.

The accounts API authenticates each call by its Authorization header. A cookie
that the server (or a load balancer before it) sets in answer to one user's
call must never travel with another user's calls, so none is kept. It also
spares httpx the cookie parsing of every answer. The jar that declines every
cookie is the way httpx's maintainers suggest until it has an option of its
own (httpx issue 1359); `CookielessClient` also spares the work httpx does
before it asks the jar.
"""

from __future__ import annotations

from http.cookiejar import Cookie, CookieJar
from typing import Any

import httpx


class NoCookies(CookieJar):
    def extract_cookies(self, response: Any, request: Any) -> None:
        pass

    def set_cookie(self, cookie: Cookie) -> None:
        pass


class _NoCookieHeaders(httpx.Cookies):
    """No cookie read from an answer, none written into a request: not even looked for."""

    def extract_cookies(self, response: httpx.Response) -> None:
        pass

    def set_cookie_header(self, request: httpx.Request) -> None:
        pass


class CookielessClient(httpx.AsyncClient):
    """An AsyncClient whose every answer costs no cookie handling at all.

    With a NoCookies jar alone, httpx (0.28) still wraps each answer and its
    request in urllib's cookie types before the jar declines them (the urllib
    Request parses the URL again): a thirtieth of the CPU of an apply's write,
    profiled. httpx reaches the cookies through this property only; the jar
    behind it is a NoCookies all the same.
    """

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self._no_cookies = _NoCookieHeaders(NoCookies())

    @property
    def cookies(self) -> httpx.Cookies:
        return self._no_cookies

    @cookies.setter
    def cookies(self, cookies: Any) -> None:
        raise TypeError("a CookielessClient keeps no cookies")
