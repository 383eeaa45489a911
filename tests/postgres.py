"""A throwaway PostgreSQL cluster for the tests: initdb and pg_ctl in a temporary directory.

One cluster per session (tests/conftest.py's `postgres_cluster`), on a port of
its own on 127.0.0.1, stopped at the end; each test gets a database of its own
(`Cluster.new_database`), owned by the role syncd uses, which logs in with a
password (scram-sha-256) read from a file, as in production. initdb refuses
to run as root: under root the server runs as the `postgres` user.

With `tls`, the cluster is the one of a production set-up: TLS only (hostssl),
with a certificate for `localhost` signed by a throwaway CA made with openssl
for it (`Cluster.ca_file`), which a client checks with
`sslmode=verify-full&sslrootcert=…` (`Cluster.tls_url`).

Where the server binaries are missing, the PostgreSQL tests fail (never skip)
with a message that says how to install them.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import secrets
import shlex
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg

ROLE = "syncd"
INSTALL_HINT = (
    "PostgreSQL's server binaries (initdb, pg_ctl) were not found in "
    "/usr/lib/postgresql/*/bin or on PATH: the PostgreSQL tests need them. "
    "Install them (Debian/Ubuntu: apt-get install postgresql-15, or the "
    "distribution's postgresql package), or set SYNCD_TEST_PG_BINDIR"
)
#: The name the TLS cluster's certificate is for.
TLS_HOST = "localhost"


def make_certificates(directory: Path, host: str) -> None:
    """ca.pem, and server.crt and server.key for `host` signed by it, in `directory`.

    The CA's key is deleted once it has signed: nothing else can be signed by it.
    """
    openssl = shutil.which("openssl")
    if openssl is None:
        raise FileNotFoundError(
            "openssl is not installed: the TLS PostgreSQL tests make their CA with it "
            "(Debian/Ubuntu: apt-get install openssl)"
        )
    key = "-newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes"
    (directory / "server.ext").write_text(
        f"subjectAltName=DNS:{host}\nextendedKeyUsage=serverAuth\n"
    )
    commands = [
        f"req -x509 {key} -keyout ca.key -out ca.pem -days 2 -subj '/CN=syncd tests CA'"
        " -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign",
        f"req {key} -keyout server.key -out server.csr -subj /CN={host}",
        "x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2"
        " -extfile server.ext -out server.crt",
    ]
    for command in commands:
        subprocess.run(
            [openssl, *shlex.split(command)],
            cwd=directory,
            capture_output=True,
            check=True,
            timeout=60,
        )
    (directory / "ca.key").unlink()
    (directory / "server.key").chmod(0o600)  # the server refuses a key others may read


def server_binaries() -> Path | None:
    """The directory of initdb and pg_ctl: the newest installed version."""
    if configured := os.environ.get("SYNCD_TEST_PG_BINDIR"):
        return Path(configured)

    def version(path: str) -> int:
        name = Path(path).parent.parent.name
        return int(name) if name.isdigit() else 0

    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=version, reverse=True)
    if found:
        return Path(found[0]).parent
    on_path = shutil.which("initdb")
    return Path(on_path).parent if on_path else None


@dataclass
class Database:
    """One test's database: its URL (no password in it) and the password's file."""

    url: str
    password_file: Path
    name: str


class Cluster:
    def __init__(
        self, bindir: Path, root: Path, *, durable: bool = False, tls: bool = False
    ) -> None:
        self.bindir = bindir
        self.root = root
        #: Whether commits reach the disk, as on a real server (the bench), or not (tests).
        self.durable = durable
        #: Where the TLS cluster's certificates are (None: no TLS), and its CA's certificate.
        self.tls = root / "tls" if tls else None
        self.ca_file = root / "ca.pem"
        self.data = root / "data"
        self.port = _free_port()
        self.password = secrets.token_hex(16)
        self.password_file = root / "password"
        # Root may not run the server: the postgres user (or, without one, nobody can).
        self.run_as: list[str] = []
        if os.geteuid() == 0:
            try:
                pwd.getpwnam("postgres")
            except KeyError:
                raise RuntimeError("running as root, and there is no postgres user") from None
            self.run_as = ["runuser", "-u", "postgres", "--"]

    def _server(self, *args: str) -> None:
        done = subprocess.run(
            [*self.run_as, *args], capture_output=True, text=True, timeout=120, check=False
        )
        if done.returncode != 0:
            log = (
                (self.root / "server.log").read_text()
                if (self.root / "server.log").exists()
                else ""
            )
            raise RuntimeError(f"{' '.join(args)} failed: {done.stderr}{done.stdout}\n{log}")

    def init(self) -> None:
        if self.run_as:
            shutil.chown(self.root, "postgres", "postgres")
        pwfile = self.root / "superuser-password"
        pwfile.write_text(secrets.token_hex(16) + "\n")
        if self.run_as:
            shutil.chown(pwfile, "postgres", "postgres")
        self._server(
            str(self.bindir / "initdb"),
            "-D",
            str(self.data),
            "-U",
            "postgres",
            "--pwfile",
            str(pwfile),
            "--auth-local=trust",
            "--auth-host=scram-sha-256",
            "-E",
            "UTF8",
            "--no-sync",
        )
        if self.tls is not None:
            self._make_tls_only(self.tls)
        self.start()
        with self.admin() as admin:
            admin.execute(f"CREATE ROLE {ROLE} LOGIN PASSWORD '{self.password}'")
        # As a credential file must be: the running user's, 0600.
        fd = os.open(self.password_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with open(fd, "w") as handle:
            handle.write(self.password + "\n")

    def _make_tls_only(self, directory: Path) -> None:
        directory.mkdir()
        make_certificates(directory, TLS_HOST)
        # The client's copy of the CA, outside the server's directory.
        shutil.copyfile(directory / "ca.pem", self.ca_file)
        if self.run_as:
            for path in (directory, *directory.iterdir()):
                shutil.chown(path, "postgres", "postgres")
        hba = self.data / "pg_hba.conf"
        lines = hba.read_text().splitlines()
        # Over TCP only with TLS, as a server that clients check with verify-full.
        hba.write_text(
            "\n".join(
                "hostssl" + line.removeprefix("host") if line.startswith("host ") else line
                for line in lines
            )
            + "\n"
        )

    def tls_url(self, database: str) -> str:
        """The URL of `database` as a production client has it: checked with verify-full."""
        assert self.tls is not None
        return (
            f"postgresql://{ROLE}@{TLS_HOST}:{self.port}/{database}"
            f"?sslmode=verify-full&sslrootcert={self.ca_file}"
        )

    def start(self) -> None:
        options = f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1"
        options += " -c max_connections=200"
        if self.tls is not None:
            options += (
                f" -c ssl=on -c ssl_cert_file={self.tls / 'server.crt'}"
                f" -c ssl_key_file={self.tls / 'server.key'}"
            )
        if not self.durable:
            options += " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        self._server(
            str(self.bindir / "pg_ctl"),
            "-D",
            str(self.data),
            "-l",
            str(self.root / "server.log"),
            "-o",
            options,
            "-w",
            "start",
        )

    def stop(self, mode: str = "fast") -> None:
        self._server(str(self.bindir / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "stop")

    def restart(self) -> None:
        """Stop the server (every session ends) and start it again on the same port."""
        self.stop("fast")
        self.start()

    def admin(self, database: str = "postgres") -> psycopg.Connection[tuple[object, ...]]:
        """The superuser, over the Unix socket (trust): for the fixtures' own work."""
        return psycopg.connect(
            host=str(self.root), port=self.port, user="postgres", dbname=database, autocommit=True
        )

    def new_database(self) -> Database:
        name = f"t_{secrets.token_hex(6)}"
        with self.admin() as admin:
            admin.execute(f"CREATE DATABASE {name} OWNER {ROLE}")
        return Database(
            f"postgresql://{ROLE}@127.0.0.1:{self.port}/{name}", self.password_file, name
        )

    def drop_database(self, name: str) -> None:
        with contextlib.suppress(psycopg.Error), self.admin() as admin:
            admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")

    def terminate(self, database: str, application_prefix: str) -> list[int]:
        """End the sessions whose application_name starts so (the server's pids)."""
        with self.admin() as admin:
            rows = admin.execute(
                "SELECT pid, pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE datname = %s AND application_name LIKE %s",
                [database, application_prefix + "%"],
            ).fetchall()
        return [pid for pid, _ in rows if isinstance(pid, int)]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@contextlib.contextmanager
def running_cluster(*, durable: bool = False, tls: bool = False) -> Iterator[Cluster]:
    """A new cluster (TLS only, with `tls`), started; stopped and deleted afterwards."""
    bindir = server_binaries()
    if bindir is None or not (bindir / "pg_ctl").exists():
        raise FileNotFoundError(INSTALL_HINT)
    root = Path(tempfile.mkdtemp(prefix="syncd-pg-"))
    cluster = Cluster(bindir, root, durable=durable, tls=tls)
    try:
        cluster.init()
        yield cluster
    finally:
        with contextlib.suppress(RuntimeError, subprocess.SubprocessError):
            cluster.stop("immediate")
        shutil.rmtree(root, ignore_errors=True)
