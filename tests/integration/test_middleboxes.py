"""A plan and an apply through the intermediaries an operator puts in front of an API.

nginx terminates TLS in front of the sandbox as a gateway would: a connection
serves three requests and idles one second at most, answers are gzipped and
streamed (chunked), never buffered. squid is a CONNECT proxy that wants Basic
auth. Through each, a few hundred users converge: the sandbox ends in the
desired state, no address is added twice, every intent has one outcome, and
the proxy's password is nowhere syncd writes.

Both servers are Debian's, run by the test on ephemeral loopback ports with
their own directory for configuration, pid and logs; the test fails without
them.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import re
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from syncd.sandbox.seed import generated_token
from tests.security.conftest import run_syncd
from tests.security.servers import CA_FILE, SERVER_PEM
from tests.world import World, write_secret

NGINX = Path("/usr/sbin/nginx")
SQUID = Path("/usr/sbin/squid")
SQUID_AUTH = Path("/usr/lib/squid/basic_ncsa_auth")
USERS = 300
PROXY_USER = "syncd"
PROXY_PASSWORD = "pr0xy-s3cret-Pa55"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@contextlib.contextmanager
def running(command: list[str], port: int, log: Path) -> Iterator[None]:
    """`command` in its own process group until the block ends, once `port` accepts."""
    with log.open("wb") as output:
        process = subprocess.Popen(
            command, stdout=output, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        deadline = time.monotonic() + 30
        while True:
            if process.poll() is not None:
                pytest.fail(f"{command[0]} exited {process.returncode}: {log.read_text()[-2000:]}")
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1):
                break
            if time.monotonic() > deadline:
                pytest.fail(f"{command[0]} not listening on {port}: {log.read_text()[-2000:]}")
            time.sleep(0.05)  # polling the port, not waiting for a guessed time
        yield
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, 9)
            process.wait()


@contextlib.contextmanager
def server_directory(owner: str) -> Iterator[Path]:
    """A directory of the server's own, which `owner` may write when the test runs as root."""
    with tempfile.TemporaryDirectory(prefix="syncd-middlebox-") as name:
        directory = Path(name)
        directory.chmod(0o755)
        if os.geteuid() == 0:
            account = pwd.getpwnam(owner)
            os.chown(directory, account.pw_uid, account.pw_gid)
        yield directory


def nginx_conf(directory: Path, port: int, upstream: int) -> str:
    # As root, the workers keep root's identity: they read nothing of another user's.
    user = f"user {pwd.getpwuid(0).pw_name};" if os.geteuid() == 0 else ""
    temp = "".join(
        f"    {kind}_temp_path {directory / kind};\n"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    return f"""{user}
worker_processes 1;
daemon off;
pid {directory / "nginx.pid"};
error_log {directory / "error.log"};
events {{ worker_connections 512; }}
http {{
{temp}
    log_format counted '$connection $connection_requests $status $sent_http_content_encoding';
    access_log {directory / "access.log"} counted;
    upstream sandbox {{ server 127.0.0.1:{upstream}; keepalive 16; }}
    server {{
        listen 127.0.0.1:{port} ssl;
        ssl_certificate {SERVER_PEM};
        ssl_certificate_key {SERVER_PEM};
        keepalive_requests 3;
        keepalive_timeout 1s;
        gzip on;
        gzip_types application/json;
        gzip_proxied any;
        gzip_min_length 0;
        location / {{
            proxy_pass http://sandbox;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $http_host;
            proxy_buffering off;
        }}
    }}
}}
"""


@dataclass(frozen=True)
class Nginx:
    port: int
    access_log: Path


@pytest.fixture
def nginx(sandbox: Any) -> Iterator[Nginx]:
    """nginx as a TLS gateway in front of the sandbox, with the test CA's certificate."""
    if not NGINX.exists():
        pytest.fail("install nginx: apt-get install nginx", pytrace=False)
    upstream = int(sandbox.url.rsplit(":", 1)[1])
    with server_directory("root") as directory:
        port = free_port()
        conf = directory / "nginx.conf"
        conf.write_text(nginx_conf(directory, port, upstream))
        command = [str(NGINX), "-p", str(directory), "-c", str(conf), "-e", "stderr"]
        with running(command, port, directory / "nginx.out"):
            yield Nginx(port, directory / "access.log")


@dataclass(frozen=True)
class Squid:
    url: str
    access_log: Path


@pytest.fixture
def squid() -> Iterator[Squid]:
    """squid as a CONNECT proxy with Basic auth; api.example is 127.0.0.1 to it."""
    if not SQUID.exists() or not SQUID_AUTH.exists():
        pytest.fail("install squid: apt-get install squid", pytrace=False)
    # squid will not keep root's identity: as root, it runs as Debian's `proxy`.
    owner = "proxy" if os.geteuid() == 0 else pwd.getpwuid(os.geteuid()).pw_name
    with server_directory(owner) as directory:
        hashed = subprocess.run(
            ["openssl", "passwd", "-apr1", "-stdin"],
            input=PROXY_PASSWORD,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        (directory / "htpasswd").write_text(f"{PROXY_USER}:{hashed}\n")
        (directory / "hosts").write_text("127.0.0.1 api.example\n")
        port = free_port()
        effective = f"cache_effective_user {owner}" if os.geteuid() == 0 else ""
        conf = directory / "squid.conf"
        conf.write_text(
            f"""http_port 127.0.0.1:{port}
{effective}
auth_param basic program {SQUID_AUTH} {directory / "htpasswd"}
auth_param basic realm syncd-test
acl authenticated proxy_auth REQUIRED
http_access allow authenticated
http_access deny all
hosts_file {directory / "hosts"}
dns_nameservers 127.0.0.1
cache deny all
pid_filename {directory / "squid.pid"}
access_log stdio:{directory / "access.log"}
cache_log {directory / "cache.log"}
cache_store_log none
coredump_dir {directory}
visible_hostname syncd-test
shutdown_lifetime 0 seconds
"""
        )
        for path in directory.iterdir():
            if os.geteuid() == 0:
                shutil.chown(path, owner)
        command = [str(SQUID), "-N", "-f", str(conf)]
        with running(command, port, directory / "squid.out"):
            yield Squid(f"http://127.0.0.1:{port}", directory / "access.log")


def crowd(world: World) -> None:
    """USERS generated accounts, their tokens, and a desired state that changes each twice."""
    world.sandbox.reset(generate=USERS)
    world.credentials_dir.mkdir(exist_ok=True)
    lines = ["version: 1", "users:"]
    for name in names():
        write_secret(world.credentials_dir / f"{name}.token", generated_token(name) + "\n")
        lines += [
            f"  {name}:",
            f'    full_name: "{desired_name(name)}"',
            f"    emails: [{name}@example.com, {name}+new@example.com]",
        ]
    world.desired_file.write_text("\n".join(lines) + "\n")


def names() -> list[str]:
    return [f"user{i:06d}" for i in range(1, USERS + 1)]


def desired_name(name: str) -> str:
    return f"Renamed {int(name[4:])}"


def converge(world: World, api_url: str, env: dict[str, str]) -> str:
    """A plan, then an apply, through the route `env` sets: their output."""
    args = world.cli_args()
    args[args.index("--api-url") + 1] = api_url
    env = {"SYNCD_CA_FILE": str(CA_FILE), **env}
    planned = run_syncd("plan", *args, env=env)
    assert planned.returncode == 0, planned.stdout + planned.stderr
    assert f"Plan: {2 * USERS} changes for {USERS} users" in planned.stdout, planned.stdout
    applied = run_syncd("apply", *args, "--yes", env=env)
    assert applied.returncode == 0, applied.stdout + applied.stderr
    return "".join([planned.stdout, planned.stderr, applied.stdout, applied.stderr])


def assert_converged(world: World) -> None:
    headers = {"Authorization": f"Bearer {world.sandbox.admin_token}"}
    with httpx.Client(base_url=world.sandbox.url, headers=headers) as sandbox:
        for name in names():
            profile = sandbox.get(f"/api/v1.1/users/{name}/").json()
            emails = [e["email"] for e in sandbox.get(f"/api/v1.1/users/{name}/emails/").json()]
            assert profile["full_name"] == desired_name(name)
            assert sorted(emails) == [f"{name}+new@example.com", f"{name}@example.com"]
    # Each address added once: one POST per user, none sent again.
    assert world.sandbox.stats()["by_method"].get("POST") == USERS
    without_one_outcome = world.query(
        "SELECT i.seq, COUNT(o.seq) AS outcomes FROM audit AS i LEFT JOIN audit AS o"
        " ON o.intent_seq = i.seq WHERE i.event = 'intent'"
        " GROUP BY i.seq HAVING COUNT(o.seq) != 1"
    )
    assert without_one_outcome == []
    intents = world.query("SELECT COUNT(*) AS n FROM audit WHERE event = 'intent'")
    assert intents == [{"n": 2 * USERS}]


def assert_gateway_was_exercised(nginx: Nginx) -> None:
    """Connections were closed after three requests and answers came gzipped."""
    lines = [line.split() for line in nginx.access_log.read_text().splitlines()]
    per_connection = [int(line[1]) for line in lines]
    assert max(per_connection) == 3
    assert len({line[0] for line in lines}) >= len(lines) / 3
    assert any(line[3:] == ["gzip"] for line in lines)


def test_a_plan_and_an_apply_through_a_tls_gateway(world: World, nginx: Nginx):
    crowd(world)
    converge(world, f"https://127.0.0.1:{nginx.port}", {})
    assert_converged(world)
    assert_gateway_was_exercised(nginx)


def test_a_plan_and_an_apply_through_a_connect_proxy_with_basic_auth(
    world: World, nginx: Nginx, squid: Squid
):
    crowd(world)
    proxy = squid.url.replace("://", f"://{PROXY_USER}:{PROXY_PASSWORD}@")
    output = converge(world, f"https://api.example:{nginx.port}", {"HTTPS_PROXY": proxy})
    assert_converged(world)
    assert_gateway_was_exercised(nginx)
    # (The readiness probe's connection is logged too, as a transaction without headers.)
    tunnels = [line for line in squid.access_log.read_text().splitlines() if "CONNECT" in line]
    assert tunnels, "nothing went through squid"
    tunnelled = rf"TCP_TUNNEL/200 \d+ CONNECT api.example:{nginx.port} {PROXY_USER} "
    assert all(re.search(tunnelled, line) for line in tunnels), tunnels[:3]
    assert PROXY_PASSWORD not in output
    for path in world.root.rglob("*"):
        if path.is_file():
            assert PROXY_PASSWORD.encode() not in path.read_bytes(), path
