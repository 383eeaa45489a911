"""How outbound calls travel: the httpx transport, through which proxy, trusting which roots.

The route comes from the settings, not from httpx reading the environment:
loopback is never proxied, `no_proxy` also takes CIDR ranges, a proxy's
password is never shown; the roots are certifi's or SSL_CERT_FILE/DIR's, plus
SYNCD_CA_FILE. `explain_failure` says in words why an attempt got no answer.
"""

from __future__ import annotations

import contextlib
import re
import socket
import ssl
from collections.abc import AsyncIterator
from ipaddress import ip_address, ip_network
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from syncd import __version__
from syncd.api.inflating import ACCEPT_ENCODING
from syncd.errors import UsageError
from syncd.redaction import redacted
from syncd.settings import Settings, is_loopback

if TYPE_CHECKING:
    import httpx

_DEFAULT_PORTS = {"http": 80, "https": 443}
_ENTRY = re.compile(r"(?:\[([^\]]+)\]|([^:\[\]]*))(?::([0-9]+))?")


def proxy_for(settings: Settings, url: str | None = None) -> str | None:
    """The proxy's URL for the API (or `url`), None for direct; UsageError if unusable."""
    api = urlsplit(url or settings.api_url)
    host = (api.hostname or "").lower()
    port = api.port or _DEFAULT_PORTS[api.scheme]
    if is_loopback(host) or bypasses_proxy(host, port, settings.no_proxy or ""):
        return None
    variable = f"{api.scheme}_proxy"
    proxy: str | None = getattr(settings, variable)
    if proxy is None:
        variable, proxy = "all_proxy", settings.all_proxy
    if proxy is None:
        return None
    if "://" not in proxy:
        proxy = f"http://{proxy}"  # as curl and urllib read `host:port`
    scheme = urlsplit(proxy).scheme.lower()
    if scheme not in ("http", "https"):
        raise UsageError(
            f"{variable} is a {scheme}:// proxy ({redacted(proxy)}): syncd speaks to "
            "http:// and https:// proxies only; unset it or add the API's host to no_proxy"
        )
    # Only a remote host gets this far: plain http:// to it needed --insecure-http.
    return proxy


def bypasses_proxy(host: str, port: int, no_proxy: str) -> bool:
    """Whether `no_proxy` names `host` (lower case, without brackets) on `port`."""
    try:
        address = ip_address(host)
    except ValueError:
        address = None
    for entry in (raw.strip().lower() for raw in no_proxy.split(",")):
        if entry == "*":
            return True
        name, entry_port = _split_port(entry)
        if not name or (entry_port is not None and entry_port != port):
            continue
        try:
            network = ip_network(name, strict=False)
        except ValueError:  # a name: itself and the names below it
            name = name.removeprefix("*").removeprefix(".")
            if name and (host == name or host.endswith("." + name)):
                return True
            continue
        if address is not None and address in network:  # never across IP versions
            return True
    return False


def _split_port(entry: str) -> tuple[str, int | None]:
    """`name`, `name:port`, `[v6]:port` or a bare IPv6 address → (name, port or None)."""
    if (match := _ENTRY.fullmatch(entry)) is None:
        return entry, None
    bracketed, name, port = match.groups()
    return bracketed or name, int(port) if port else None


def check_trust_files(settings: Settings) -> None:
    """A missing root or CA file is one line now, not a traceback at the first request."""
    for name, path, kind in (
        (settings.variable("ssl_cert_file"), settings.ssl_cert_file, "file"),
        (settings.variable("ssl_cert_dir"), settings.ssl_cert_dir, "directory"),
        ("SYNCD_CA_FILE", settings.ca_file, "file"),
    ):
        if path is not None and not (path.is_dir() if kind == "directory" else path.is_file()):
            raise UsageError(f"{name} {path}: no such {kind}")


def tls_context(settings: Settings) -> ssl.SSLContext:
    """The verifying TLS context of every connection to the API (and to an https:// proxy)."""
    cafile, capath = settings.ssl_cert_file, settings.ssl_cert_dir
    if cafile is None and capath is None:
        import certifi

        cafile = Path(certifi.where())
    try:
        context = ssl.create_default_context(cafile=cafile, capath=capath)
    except (OSError, ssl.SSLError) as error:
        shown = settings.variable("ssl_cert_file" if cafile else "ssl_cert_dir")
        why = _reason(error)
        raise UsageError(f"{shown} {cafile or capath}: cannot load the roots: {why}") from None
    if settings.ca_file is not None:
        try:
            context.load_verify_locations(cafile=settings.ca_file)
        except (OSError, ssl.SSLError) as error:
            why = f"SYNCD_CA_FILE {settings.ca_file}: cannot load the CA: {_reason(error)}"
            raise UsageError(why) from None
    return context


class Lane:
    """One connection (to the API, or to `url`, a notification's receiver) through httpx's
    transport API, routed as above, verified with `tls`: shared, for loading the roots is
    most of a first connection's cost. Not an httpx.AsyncClient: what a client adds on top
    (redirects, cookies, auth, a base URL) syncd would only switch off, and skipping it
    saves CPU on every request."""

    def __init__(self, settings: Settings, tls: ssl.SSLContext, url: str | None = None) -> None:
        import httpx

        proxy = None
        if (through := proxy_for(settings, url)) is not None:
            # httpx turns the proxy's user and password into Proxy-Authorization. An
            # https:// proxy is verified with the same roots as the API, not certifi's alone.
            https = through.lower().startswith("https://")
            proxy = httpx.Proxy(through, ssl_context=tls if https else None)
        limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
        # A transport reads no environment: the route and the roots are the settings'.
        self._transport = httpx.AsyncHTTPTransport(verify=tls, limits=limits, proxy=proxy)
        self._headers = {
            "Accept": "application/json",
            "Accept-Encoding": ACCEPT_ENCODING,
            "User-Agent": f"syncd/{__version__}",
        }
        self._extensions = {"timeout": httpx.Timeout(settings.timeout).as_dict()}

    @contextlib.asynccontextmanager
    async def stream(
        self,
        method: str,
        url: str,
        headers: dict[str, str],
        json: object = None,
        content: bytes | None = None,
    ) -> AsyncIterator[httpx.Response]:
        """The answer to one request, its body unread, closed on leaving."""
        import httpx

        headers = {**self._headers, **headers}
        request = httpx.Request(method, url, headers=headers, json=json, content=content)
        request.extensions = dict(self._extensions)  # as Request() copies them
        response = await self._transport.handle_async_request(request)
        try:
            yield response
        finally:
            await response.aclose()

    async def aclose(self) -> None:
        await self._transport.aclose()


def explain_failure(
    error: httpx.TransportError, proxy: str | None, api_url: str
) -> tuple[str, bool]:
    """What went wrong with an attempt that got no answer, in words, and whether it is
    hopeless: the same for every request (TLS refused, the proxy's 407), never retried."""
    import httpx

    causes = _causes(error)
    tls = next((c for c in causes if isinstance(c, ssl.SSLError)), None)
    api = urlsplit(api_url)
    port = api.port or _DEFAULT_PORTS[api.scheme]
    peer = f"the proxy {redacted(proxy)}" if proxy else f"{api.hostname}:{port}"
    if isinstance(error, httpx.ProxyError):  # a CONNECT answered other than 2xx, or a 407
        if str(error).startswith("407"):
            return f"{peer} refused its credentials ({error}): check the proxy URL's user", True
        return f"{peer} refused the tunnel: {error}", False
    if isinstance(tls, ssl.SSLCertVerificationError):
        return f"TLS refused: {tls.verify_message} ({tls.reason})", True
    if tls is not None and any(w in (tls.reason or "") for w in _HOPELESS_TLS):
        return f"TLS refused: {_reason(tls)} ({tls.reason})", True
    if isinstance(error, httpx.ConnectError | httpx.ConnectTimeout):
        if any(isinstance(c, ConnectionRefusedError) for c in causes):
            return f"connection refused by {peer}", False
        if any(isinstance(c, socket.gaierror) for c in causes):
            return f"cannot resolve the host of {peer}", False
        return f"cannot connect to {peer}: {str(error) or 'no connection'}", False
    if isinstance(error, httpx.WriteError) or any(isinstance(c, BrokenPipeError) for c in causes):
        return "the connection was closed while the request was being sent", False
    if any(isinstance(c, ConnectionResetError) for c in causes):
        return "the connection was reset before an answer", False
    if "complete message body" in (said := str(error)):  # "(received 8 bytes, expected 10)"
        return f"the answer was cut short {said[said.rfind('(') :]}", False
    if "_SWITCH_UPGRADE" in said:  # h11 refuses a 101 that no request asked for
        return "the server answered 101 Switching Protocols, which the API never does", False
    if isinstance(error, httpx.ReadError | httpx.RemoteProtocolError):
        # "Server disconnected without sending a response.", or nothing at all.
        return "the connection was closed before an answer", False
    return f"{error.__class__.__name__}: {error}".rstrip(": "), False


#: TLS failures that no retry mends: alerts, versions, ciphers (a connection that
#: drops mid-handshake is an EOF, and is retried).
_HOPELESS_TLS = ("ALERT", "VERSION", "PROTOCOL", "CIPHER")


def _causes(error: BaseException) -> list[BaseException]:
    """`error` and what it was raised from (httpx from httpcore, from the socket's)."""
    chain: list[BaseException] = []
    cause: BaseException | None = error
    while cause is not None and cause not in chain:
        chain.append(cause)
        cause = cause.__cause__ or cause.__context__
    return chain


def _reason(error: OSError | ssl.SSLError) -> str:
    if isinstance(error, ssl.SSLError):
        # "[X509: NO_CERTIFICATE_OR_CRL_FOUND] no certificate or crl found (_ssl.c:4149)"
        text = str(error).partition("] ")[2] or str(error)
        return text.split(" (_ssl.c")[0]
    return error.strerror or str(error)
