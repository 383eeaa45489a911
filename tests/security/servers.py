"""The intermediaries and hostile servers of the security tests, each on loopback in a thread.

    TlsFront        TLS in front of the sandbox, with a certificate of the test CA;
                    counts the connections it accepts
    RecordingProxy  an HTTP proxy that records what it is asked and tunnels CONNECT
                    to the loopback ports it is told about; any other request gets
                    one fixed answer (502, or a 407, or a 301 when it plays an API)
    GitAuthServer   an https git server that asks for Basic auth and, while git
                    waits for its answer, reads every process's command line
    GitRedirectServer an https git server that redirects to another URL (at once, or
                    once it has been given Basic auth)
    GitHttpServer   a plain http git server (git http-backend) for a TlsFront to serve
    AuthRecorder    a plain http server on 127.0.0.2 that asks for Basic auth and
                    records every Authorization header it is sent
    SilentServer    accepts connections and never answers
    EchoServer      plays an API, a gateway or a proxy that quotes back the credentials
                    it was sent: each request is answered as the test's function says

Every thread is a daemon and every socket is closed on exit; nothing listens
beyond 127.0.0.1 (127.0.0.2 for AuthRecorder, another host to git).
"""

from __future__ import annotations

import base64
import contextlib
import http.server
import os
import socket
import socketserver
import ssl
import subprocess
import threading
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Any

DATA = Path(__file__).parent / "data"
CA_FILE = DATA / "ca.pem"  # the test CA; its key is not kept
SERVER_PEM = DATA / "server.pem"  # api.example and 127.0.0.1, signed by the test CA


def server_tls() -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(SERVER_PEM)
    return context


class _Threaded(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True


class _Background:
    """A socketserver in a thread, for `with`: `port` is where it listens."""

    def __init__(
        self, handler: type[socketserver.BaseRequestHandler], host: str = "127.0.0.1"
    ) -> None:
        self.server = _Threaded((host, 0), handler)
        self.server.owner = self  # type: ignore[attr-defined]
        self.port: int = self.server.server_address[1]
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> Any:
        self._thread.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.server.shutdown()
        self.server.server_close()


def _pipe(one: socket.socket, other: socket.socket) -> None:
    """Copy bytes both ways until either side closes."""

    def copy(source: socket.socket, target: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := source.recv(65536):
                target.sendall(data)
        with contextlib.suppress(OSError):
            target.shutdown(socket.SHUT_WR)

    back = threading.Thread(target=copy, args=(other, one), daemon=True)
    back.start()
    copy(one, other)
    back.join(timeout=30)


class TlsFront(_Background):
    """Terminates TLS with the test certificate and forwards the bytes to `target_port`."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.tls = server_tls()
        self.connections = 0
        super().__init__(_TlsFrontHandler)


class _TlsFrontHandler(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        front: TlsFront = self.server.owner  # type: ignore[attr-defined]
        front.connections += 1
        try:
            secure = front.tls.wrap_socket(self.request, server_side=True)
        except (ssl.SSLError, OSError):
            return  # a client that does not trust the test CA hangs up here
        with secure, socket.create_connection(("127.0.0.1", front.target_port)) as upstream:
            _pipe(secure, upstream)


BAD_GATEWAY = b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n"
PROXY_AUTH_REQUIRED = (
    b"HTTP/1.1 407 Proxy Authentication Required\r\n"
    b'Proxy-Authenticate: Basic realm="proxy"\r\nContent-Length: 0\r\n\r\n'
)


class RecordingProxy(_Background):
    """An HTTP proxy: records each request line; tunnels CONNECT host:port to a loopback
    port named in `tunnels`, and answers anything else `otherwise` (502)."""

    def __init__(self, tunnels: dict[str, int] | None = None, otherwise: bytes = BAD_GATEWAY):
        self.tunnels = tunnels or {}
        self.otherwise = otherwise
        self.requests: list[str] = []
        super().__init__(_ProxyHandler)


class _ProxyHandler(socketserver.StreamRequestHandler):
    def handle(self) -> None:
        proxy: RecordingProxy = self.server.owner  # type: ignore[attr-defined]
        line = self.rfile.readline(65536).decode("latin-1").strip()
        while self.rfile.readline(65536) not in (b"\r\n", b"\n", b""):
            pass  # the headers: not needed
        proxy.requests.append(line)
        method, _, rest = line.partition(" ")
        target = rest.split(" ")[0]
        if method == "CONNECT" and target in proxy.tunnels:
            upstream = socket.create_connection(("127.0.0.1", proxy.tunnels[target]))
            self.wfile.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
            self.wfile.flush()
            with upstream:
                _pipe(self.request, upstream)
            return
        self.wfile.write(proxy.otherwise)


class GitAuthServer(_Background):
    """https://127.0.0.1:port/…: 401 asking for Basic auth; a request that brings it is
    recorded, with the command line of every process that holds `secret`, then 403."""

    def __init__(self, secret: str) -> None:
        self.secret = secret
        self.tls = server_tls()
        self.authorizations: list[str] = []
        self.command_lines_with_secret: list[str] = []
        super().__init__(_GitAuthHandler)


def command_lines_containing(text: str) -> list[str]:
    """The command line of every process of this machine that contains `text`."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        with contextlib.suppress(OSError):
            arguments = Path(f"/proc/{entry}/cmdline").read_bytes().split(b"\0")
            line = " ".join(argument.decode("utf-8", "replace") for argument in arguments)
            if text in line:
                found.append(f"{entry}: {line}")
    return found


class _GitAuthHandler(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        server: GitAuthServer = self.server.owner  # type: ignore[attr-defined]
        try:
            secure = server.tls.wrap_socket(self.request, server_side=True)
        except (ssl.SSLError, OSError):
            return
        with secure, secure.makefile("rwb") as stream:
            while True:
                request_line = stream.readline(65536)
                if not request_line:
                    return
                headers = {}
                while (header := stream.readline(65536)) not in (b"\r\n", b"\n", b""):
                    name, _, value = header.decode("latin-1").partition(":")
                    headers[name.strip().lower()] = value.strip()
                authorization = headers.get("authorization")
                if authorization is None:
                    stream.write(
                        b'HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Basic realm="git"\r\n'
                        b"Content-Length: 0\r\n\r\n"
                    )
                    stream.flush()
                    continue
                # git (git-remote-https) is waiting for this answer: alive, with the
                # command line it was started with.
                server.authorizations.append(authorization)
                server.command_lines_with_secret += command_lines_containing(server.secret)
                stream.write(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n")
                stream.flush()
                return


def _read_head(stream: Any) -> tuple[str, dict[str, str]] | None:
    """The request line and the headers (names lower-cased) of the next request, or None."""
    request_line = stream.readline(65536)
    if not request_line:
        return None
    headers = {}
    while (header := stream.readline(65536)) not in (b"\r\n", b"\n", b""):
        name, _, value = header.decode("latin-1").partition(":")
        headers[name.strip().lower()] = value.strip()
    return request_line.decode("latin-1").strip(), headers


_ASK_FOR_BASIC = (
    b'HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Basic realm="git"\r\n'
    b"Content-Length: 0\r\n\r\n"
)


class GitRedirectServer(_Background):
    """https://127.0.0.1:port/…: 302 to `target` followed by the request's path; with
    `ask_first`, only once the request brings Basic auth (401 asking for it before)."""

    def __init__(self, target: str, *, ask_first: bool) -> None:
        self.target = target
        self.ask_first = ask_first
        self.tls = server_tls()
        self.authorizations: list[str] = []
        super().__init__(_GitRedirectHandler)


class _GitRedirectHandler(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        server: GitRedirectServer = self.server.owner  # type: ignore[attr-defined]
        try:
            secure = server.tls.wrap_socket(self.request, server_side=True)
        except (ssl.SSLError, OSError):
            return
        with secure, secure.makefile("rwb") as stream:
            while (head := _read_head(stream)) is not None:
                line, headers = head
                if server.ask_first and "authorization" not in headers:
                    stream.write(_ASK_FOR_BASIC)
                else:
                    if "authorization" in headers:
                        server.authorizations.append(headers["authorization"])
                    location = server.target + line.split(" ")[1]
                    stream.write(
                        f"HTTP/1.1 302 Found\r\nLocation: {location}\r\n"
                        "Content-Length: 0\r\n\r\n".encode()
                    )
                stream.flush()


class GitHttpServer(_Background):
    """http://127.0.0.1:port/<name>.git: the repositories under `root` served by git's
    smart HTTP (`git http-backend`, without authentication); in front of it a
    TlsFront makes it an https git server."""

    def __init__(self, root: Path) -> None:
        self.root = root
        super().__init__(_GitHttpHandler)


class _GitHttpHandler(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self._backend()

    def do_POST(self) -> None:
        self._backend()

    def log_message(self, format: str, *args: Any) -> None:
        pass  # the test's output is not the place

    def _backend(self) -> None:
        server: GitHttpServer = self.server.owner  # type: ignore[attr-defined]
        path, _, query = self.path.partition("?")
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        environment = {
            "PATH": os.environ["PATH"],
            "GIT_PROJECT_ROOT": str(server.root),
            "GIT_HTTP_EXPORT_ALL": "1",
            "REQUEST_METHOD": self.command,
            "PATH_INFO": path,
            "QUERY_STRING": query,
            "CONTENT_TYPE": self.headers.get("Content-Type", ""),
            "HTTP_CONTENT_ENCODING": self.headers.get("Content-Encoding", ""),
            "HTTP_GIT_PROTOCOL": self.headers.get("Git-Protocol", ""),
            "REMOTE_ADDR": "127.0.0.1",
        }
        done = subprocess.run(
            ["git", "http-backend"], input=body, env=environment, capture_output=True, check=False
        )
        head, _, payload = done.stdout.partition(b"\r\n\r\n")
        status, headers = 200, []
        for line in filter(None, head.decode("latin-1").split("\r\n")):
            name, _, value = line.partition(":")
            if name.lower() == "status":
                status = int(value.split()[0])
            else:
                headers.append((name, value.strip()))
        self.send_response(status)
        for name, value in headers:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)


class AuthRecorder(_Background):
    """http://127.0.0.2:port/…: records each request's Authorization header (None when
    there is none) and answers 401 asking for Basic auth."""

    def __init__(self) -> None:
        self.authorizations: list[str | None] = []
        super().__init__(_AuthRecorderHandler, host="127.0.0.2")

    @property
    def url(self) -> str:
        return f"http://127.0.0.2:{self.port}"


class _AuthRecorderHandler(socketserver.StreamRequestHandler):
    def handle(self) -> None:
        server: AuthRecorder = self.server.owner  # type: ignore[attr-defined]
        while (head := _read_head(self.rfile)) is not None:
            server.authorizations.append(head[1].get("authorization"))
            self.wfile.write(_ASK_FOR_BASIC)
            self.wfile.flush()


class SilentServer(_Background):
    """Accepts every connection and never answers, until the test ends."""

    def __init__(self) -> None:
        self.accepted = threading.Event()
        self.release = threading.Event()
        super().__init__(_SilentHandler)

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release.set()
        super().__exit__(kind, error, tb)


class _SilentHandler(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        server: SilentServer = self.server.owner  # type: ignore[attr-defined]
        server.accepted.set()
        server.release.wait(timeout=120)


def basic_secret(authorization: str) -> str:
    """The password of a `Basic …` Authorization header."""
    return base64.b64decode(authorization.split(" ", 1)[1]).decode().partition(":")[2]


#: What an EchoServer answers a request (its method, target and headers, names in
#: lower case): the status line's code and reason, more header lines, and the body.
Answer = Callable[[str, str, dict[str, str]], tuple[str, str, str]]


class EchoServer(_Background):
    """http://127.0.0.1:port: answers each request (a CONNECT too) with `answer`'s
    status, headers and body, where `{auth}`, `{proxy}` and `{password}` become the
    request's Authorization, its Proxy-Authorization and the Basic password of either."""

    def __init__(self, answer: Answer) -> None:
        self.answer = answer
        self.requests: list[str] = []
        super().__init__(_EchoHandler)


class _EchoHandler(socketserver.StreamRequestHandler):
    def handle(self) -> None:
        server: EchoServer = self.server.owner  # type: ignore[attr-defined]
        while (head := _read_head(self.rfile)) is not None:
            line, headers = head
            server.requests.append(line)
            self.rfile.read(int(headers.get("content-length") or 0))
            auth, proxy = headers.get("authorization", ""), headers.get("proxy-authorization", "")
            basic = next((h for h in (auth, proxy) if h.startswith("Basic ")), "")
            fills = {"{auth}": auth, "{proxy}": proxy, "{password}": basic and basic_secret(basic)}
            method, target = line.split(" ")[:2]
            status, more, body = server.answer(method, target, headers)
            for mark, value in fills.items():
                status, more, body = (t.replace(mark, value) for t in (status, more, body))
            payload = body.encode()
            self.wfile.write(
                f"HTTP/1.1 {status}\r\n{more}Content-Length: {len(payload)}\r\n\r\n".encode()
                + payload
            )
            self.wfile.flush()
