"""Where the desired state comes from: a file, a directory, or a git repository (GitOps).

`SYNCD_DESIRED` is a path, or a git URL with an optional `#ref` and `:path`:

    git+https://example.org/ops/accounts.git#main:accounts/
    git+ssh://git@example.org/ops/accounts.git#v1.2:users.yaml
    git+file:///srv/git/accounts.git                 (the remote HEAD, the root)

A `#ref` name is the branch of that name, else the tag (GitLocation.refs); a
full ref or a full commit id is taken as written.

The repository is fetched with the `git` command (shallow, no working tree) into
a bare repository under `<state_dir>/git/`, and the files are read from the
fetched commit, whose id becomes the desired state's revision: converge records
it on the run and in every audit event. The last commit that validated is kept
as `refs/syncd/good`, so that when a fetch fails the daemon goes on with it and
warns, even after a restart; a commit that fails validation is never applied and
never becomes the good one.

Credentials reach no log, no message and no command line: locations are shown
redacted, git's own messages are scrubbed, and the password or token of the URL
(`https://user:token@…`, `https://token@…`) or of the git credential file reaches git through a
credential helper (syncd.desired.gitcredentials); the URL git is given holds
none, and reaches it through the environment. git runs without a terminal
prompt, ssh in batch mode, and each in a process group of its own: when
`SYNCD_GIT_TIMEOUT` runs out for the whole fetch (or for reading the files),
or the run is cancelled (its deadline, a shutdown), the whole group is killed,
git-remote-https and ssh with it, so that no git process outlives the fetch.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import re
import threading
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import unquote, urlsplit

from syncd.core.desired import DesiredState, Scope
from syncd.desired.gitcredentials import (
    DEFAULT_FILE_NAME,
    GitCredential,
    GitCredentialFile,
    add_git_config,
    credential_for,
)
from syncd.desired.gitprocess import run_in_own_group
from syncd.desired.gittree import (
    Blob,
    Found,
    found_objects,
    link_targets,
    listed_entries,
    not_a_file,
)
from syncd.desired.loading import load_desired, parse_desired
from syncd.desired.memo import DesiredMemo
from syncd.desired.sourcefiles import source_too_large
from syncd.desired.yaml_positions import MAX_FILE_BYTES
from syncd.errors import CredentialError, DesiredStateError, GitSourceError, Problem, UsageError
from syncd.privatefiles import private_directory
from syncd.redaction import git_spec_url, redacted, scrub, userinfo
from syncd.settings import Settings

T = TypeVar("T")

GOOD_REF = "refs/syncd/good"
REMOTE = "syncd"
_SCHEMES = ("https", "ssh", "file")
# What git check-ref-format allows, minus what could be read as an option.
_REF = re.compile(r"(?!-)(?!.*\.\.)(?!.*\.lock$)[A-Za-z0-9._/+-]+")
_COMMIT_ID = re.compile(r"[0-9a-f]{40}|[0-9a-f]{64}")
_STDERR_LINES = 3


@dataclass(frozen=True)
class GitLocation:
    """A parsed `git+…` desired state: what to fetch, which ref, and where in the tree."""

    url: str  # as git gets it: may hold a credential, so never shown
    ref: str  # "HEAD": the remote's default branch
    path: str  # "" for the root of the repository

    @property
    def redacted_url(self) -> str:
        return redacted(self.url)

    def __str__(self) -> str:
        path = f":{self.path}" if self.path else ""  # else messages said "#main::"
        return f"git+{self.redacted_url}#{self.ref}{path}"

    @property
    def refs(self) -> tuple[str, ...]:
        """What git is asked for, in turn, until the remote has one. A name is the branch of
        that name, else the tag, as `git clone --branch` takes it: git's own order (the tag
        first) let whoever may push a tag `main` choose what is applied in place of the
        reviewed branch. `refs/…`, a full commit id and HEAD are taken as written."""
        if self.ref == "HEAD" or self.ref.startswith("refs/") or _COMMIT_ID.fullmatch(self.ref):
            return (self.ref,)
        return (f"refs/heads/{self.ref}", f"refs/tags/{self.ref}")

    def scrub(self, text: str, *secrets: str) -> str:
        """`text` (git's stderr) without the URL's credential, nor any of `secrets`."""
        text = text.replace(self.url, self.redacted_url)
        user, _, password = (userinfo(self.url) or "").partition(":")
        if urlsplit(self.url).scheme != "https":
            user = ""  # a name for ssh, not a token
        found = (s for s in (password, user, *secrets) if len(s) >= 4)
        return scrub(text, *(form for s in found for form in (s, unquote(s))))


def parse_git_desired(spec: str) -> GitLocation | None:
    """The git location of a `git+…` desired state; None for a plain path."""
    if not spec.startswith("git+"):
        return None
    # A password that urlsplit would misread (a `/`, `?` or `#` in it) was refused
    # with the settings (syncd.redaction.misread): git is never given one.
    url = git_spec_url(spec)
    fragment = spec[len("git+") + len(url) + 1 :]
    ref, _, path = fragment.partition(":")
    parts = urlsplit(url)
    shown = shown_desired(spec)  # for messages: as given, before the rest is checked
    if parts.scheme not in _SCHEMES:
        unsafe = " (not plain http: anyone on the way could change what is fetched)"
        raise UsageError(
            f"{shown}: a git desired state is git+https://, git+ssh:// or git+file://"
            f"{unsafe if parts.scheme == 'http' else ''}"
        )
    if parts.scheme == "file" and (parts.netloc not in ("", "localhost") or not parts.path):
        raise UsageError(f"{shown}: write a local repository as git+file:///absolute/path")
    if parts.scheme != "file" and not parts.hostname:
        raise UsageError(f"{shown}: no host in the URL")
    ref = ref or "HEAD"
    if not _REF.fullmatch(ref) or "//" in ref:
        raise UsageError(f"{shown}: {ref!r} is not a branch, tag or commit name")
    path = path.strip("/")
    # A line break would end the path early where git reads one path a line (gittree).
    if "\n" in path or (path and any(part in ("", ".", "..") for part in path.split("/"))):
        raise UsageError(f"{shown}: the path {path!r} must name a file or directory in the tree")
    return GitLocation(url, ref, path)


def shown_desired(spec: str) -> str:
    """A desired state as it was written, the credential of a git URL masked: how
    every message, log line and page shows SYNCD_DESIRED or `-f`."""
    if not spec.startswith("git+"):
        return spec
    url = git_spec_url(spec)
    return f"git+{redacted(url)}{spec[len('git+') + len(url) :]}"


class GitMirror:
    """The bare repository in the state directory that a git location is fetched into."""

    def __init__(
        self,
        location: GitLocation,
        state_dir: Path,
        timeout: float,
        credentials: GitCredentialFile | None = None,
    ) -> None:
        self.location = location
        self.timeout = timeout
        self.credentials = credentials
        self.state_dir = state_dir
        # One repository per location (never keyed on the credential, so rotating it
        # keeps the mirror): refs/syncd/good then always belongs to this ref and path.
        # (Spelt as it always was, ":" and all, so that an upgrade keeps the mirror.)
        spelt = f"git+{location.redacted_url}#{location.ref}:{location.path}"
        key = hashlib.sha256(spelt.encode()).hexdigest()[:16]
        self.directory = state_dir / "git" / key
        #: Which of the location's refs the last fetch found (see GitLocation.refs), kept
        #: in the mirror: a branch followed and then deleted is a failed fetch, never a
        #: silent switch to a tag of its name.
        self.followed: str | None = None
        self._followed_file = self.directory / "syncd-followed"

    async def fetch(self) -> str:
        """Fetch the ref; returns its commit id. Raises GitSourceError.

        SYNCD_GIT_TIMEOUT bounds the whole of it, not each git command.
        """
        private_directory(self.state_dir)
        private_directory(self.directory.parent, follow=False)
        try:
            url, credential = credential_for(self.location.url, self.credentials)
        except CredentialError as error:
            raise GitSourceError(f"{self.location}: {error}") from None
        async with self._within_timeout("fetch"):
            if not (self.directory / "HEAD").exists():
                await self._git("init", "--quiet", "--bare", str(self.directory), in_mirror=False)
            private_directory(self.directory, create=False, follow=False)
            with contextlib.suppress(OSError):
                self.followed = self.followed or self._followed_file.read_text().strip()
            refs = self.location.refs
            if self.followed in refs:
                refs = (self.followed,)
            for ref in refs:
                try:
                    await self._git(
                        "fetch",
                        "--quiet",
                        "--no-tags",
                        "--no-recurse-submodules",
                        "--depth=1",
                        "--end-of-options",
                        REMOTE,
                        ref,
                        remote_url=url,
                        credential=credential,
                    )
                    break
                except GitSourceError as error:
                    if len(refs) == 1 or "couldn't find remote ref" not in str(error):
                        raise
                    if ref == refs[-1]:
                        name = self.location.ref
                        message = f"{self.location}: the remote has no branch or tag {name!r}"
                        raise GitSourceError(message) from None
            if ref != self.followed:
                self._followed_file.write_text(ref)
                self.followed = ref
            return await self._commit("FETCH_HEAD")

    @contextlib.asynccontextmanager
    async def _within_timeout(self, what: str) -> AsyncIterator[None]:
        try:
            async with asyncio.timeout(self.timeout):
                yield
        except TimeoutError:
            raise GitSourceError(
                f"{self.location}: the git {what} took more than {self.timeout:g} s"
                " (SYNCD_GIT_TIMEOUT); git was stopped"
            ) from None

    async def good(self) -> str | None:
        """The last commit that validated, if any."""
        try:
            async with self._within_timeout("rev-parse"):
                return await self._commit(GOOD_REF)
        except GitSourceError:
            return None

    async def mark_good(self, commit: str) -> None:
        async with self._within_timeout("update-ref"):
            await self._git("update-ref", GOOD_REF, commit)

    async def read(self, commit: str) -> tuple[list[tuple[str, bytes]], list[Problem]]:
        """The desired-state files at `commit`: the file at the path, or the YAML files in
        it (syncd.desired.gittree: symlinks followed); and the problems of those that
        cannot be read, for the loader to show beside the others'.

        Raises DesiredStateError when there are none, as for a path on disk.
        """
        async with self._within_timeout("read"):
            path = self.location.path
            shown = path or "."
            [top] = await self._find(commit, [path])
            if top.kind == "blob":
                return [await self._blob(Blob(path, top.object_id, top.size))], []
            if top.kind != "tree":
                raise DesiredStateError([Problem(shown, 1, 1, not_a_file(top, commit))])
            listing = await self._git("ls-tree", "-r", "-z", "-l", top.object_id)
            listed = listed_entries(listing, path)
            count = len(listed.blobs) + len(listed.links)
            if (too_many := source_too_large(shown, count, 0)) is not None:
                raise DesiredStateError([too_many])
            blobs, problems = listed.blobs, listed.problems
            paths = [link.path for link in listed.links]
            broken = []
            for link, found in zip(listed.links, await self._find(commit, paths), strict=True):
                if found.kind == "blob":
                    blobs.append(Blob(link.path, found.object_id, found.size))
                else:
                    broken.append((link, found))
            if broken:  # what each link says, for its message
                objects = "".join(f"{link.object_id}\n" for link, _ in broken).encode()
                targets = link_targets(await self._git("cat-file", "--batch", stdin=objects))
                for (link, found), target in zip(broken, targets, strict=True):
                    problems.append(Problem(link.path, 1, 1, not_a_file(found, commit, target)))
            blobs.sort(key=lambda blob: blob.path.split("/"))  # as a directory on disk is read
            if not blobs and not problems:
                message = f"no *.yaml or *.yml file in this directory at {commit[:12]}"
                raise DesiredStateError([Problem(shown, 1, 1, message)])
            # The whole tree is bounded before a blob is read: one blob may be listed
            # under many names, each within the limit of a file.
            total = sum(blob.size for blob in blobs)
            if (too_large := source_too_large(shown, len(blobs), total)) is not None:
                raise DesiredStateError([too_large])
            return [await self._blob(blob) for blob in blobs], problems

    async def _find(self, commit: str, paths: list[str]) -> list[Found]:
        """What each path names at `commit`, symlinks followed within the commit."""
        if not paths:
            return []
        queries = "".join(f"{commit}:{path}\n" for path in paths).encode()
        output = await self._git("cat-file", "--batch-check", "--follow-symlinks", stdin=queries)
        return found_objects(output)

    async def _blob(self, blob: Blob) -> tuple[str, bytes]:
        if blob.size > MAX_FILE_BYTES:
            message = f"file is {blob.size} bytes; the limit is {MAX_FILE_BYTES // 2**20} MiB"
            raise DesiredStateError([Problem(blob.path, 1, 1, message)])
        return blob.path, await self._git("cat-file", "blob", blob.object_id)

    async def _commit(self, name: str) -> str:
        output = await self._git("rev-parse", "--verify", "--quiet", f"{name}^{{commit}}")
        return output.decode().strip()

    async def _git(
        self,
        *args: str,
        in_mirror: bool = True,
        remote_url: str | None = None,
        credential: GitCredential | None = None,
        stdin: bytes | None = None,
    ) -> bytes:
        command = ["git", "-C", str(self.directory), *args] if in_mirror else ["git", *args]
        environment = {**os.environ, "GIT_TERMINAL_PROMPT": "0", "LC_ALL": "C"}
        # An ssh prompt (host key, passphrase) would hang a daemon: fail instead.
        environment.setdefault("GIT_SSH_COMMAND", "ssh -o BatchMode=yes")
        if remote_url is not None:
            # The URL goes in the environment (git >= 2.31), which only its owner can
            # read, not on the command line of git; nor on disk. It holds no password
            # (see fetch): git passes it on to git-remote-https as an argument.
            add_git_config(environment, [(f"remote.{REMOTE}.url", remote_url)])
        if credential is not None and remote_url is not None:
            environment = credential.environment(environment, remote_url)
        returncode, stdout, stderr = await run_in_own_group(command, environment, stdin)
        if returncode != 0:
            lines = [line for line in stderr.decode("utf-8", "replace").splitlines() if line]
            # git's own verdict ("fatal: …") says more than the advice that follows it.
            verdicts = [line for line in lines if line.startswith(("fatal:", "error:"))]
            shown = (verdicts or lines)[:_STDERR_LINES]
            secrets = (credential.password,) if credential else ()
            detail = self.location.scrub(" / ".join(shown), *secrets)
            raise GitSourceError(
                f"{self.location}: git {args[0]} failed: {detail or f'exit status {returncode}'}"
            )
        return stdout


async def in_thread(function: Callable[..., T], *args: Any) -> T:
    """Run `function` (parsing: CPU only) off the event loop, so signals and the watchdog
    are served meanwhile. A daemon thread, not an executor: a shutdown must not wait for it."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[T] = loop.create_future()

    def settle(result: T | None, error: BaseException | None) -> None:
        if future.done():
            return  # the awaiting run was cancelled
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(result)  # type: ignore[arg-type]

    def work() -> None:
        try:
            result, error = function(*args), None
        except Exception as raised:
            result, error = None, raised
        with contextlib.suppress(RuntimeError):  # the loop has closed: nobody waits any more
            loop.call_soon_threadsafe(settle, result, error)

    threading.Thread(target=work, name="syncd-desired", daemon=True).start()
    return await future


@dataclass(frozen=True)
class DesiredRead:
    desired: DesiredState
    #: Why this is the last good revision and not a fresh one (the fetch error), or None.
    stale: str | None = None


class DesiredSource:
    """The desired state of the daemon, read again every cycle."""

    def __init__(
        self,
        spec: str,
        state_dir: Path,
        git_timeout: float,
        git_credentials: GitCredentialFile | None = None,
        scope: Scope | None = None,
    ) -> None:
        self.spec = spec
        #: The users each read is limited to (`syncd run --once --user ...`).
        self.scope = scope or Scope()
        self.location = parse_git_desired(spec)
        self._mirror = (
            None
            if self.location is None
            else GitMirror(self.location, state_dir, git_timeout, git_credentials)
        )
        self._good: DesiredState | None = None
        #: The revision the last read tried, valid or not: what an invalid run records.
        self.attempted_revision: str | None = None

    @classmethod
    def from_settings(cls, settings: Settings, scope: Scope | None = None) -> DesiredSource:
        return cls(
            settings.desired,
            settings.state_dir,
            settings.git_timeout,
            git_credential_file(settings),
            scope,
        )

    def __str__(self) -> str:
        return self.spec if self.location is None else str(self.location)

    @property
    def followed_ref(self) -> str | None:
        """The ref whose pushes concern this source (None for a file): the one the last
        fetch found (a name's branch, or else its tag); the branch before any fetch."""
        if self._mirror is None:
            return None
        return self._mirror.followed or self._mirror.location.refs[0]

    async def read(self) -> DesiredRead:
        """The desired state, limited to the scope; raises DesiredStateError (apply
        nothing), GitSourceError, or UsageError for a scope naming what it lacks."""
        if self._mirror is None:
            return DesiredRead((await in_thread(load_desired, self.spec)).select(self.scope))
        try:
            commit = await self._mirror.fetch()
        except GitSourceError as error:
            good = await self._mirror.good()
            if good is None:
                raise
            self.attempted_revision = good
            return DesiredRead((await self._load(good)).select(self.scope), stale=str(error))
        self.attempted_revision = commit
        desired = await self._load(commit)
        await self._mirror.mark_good(commit)
        return DesiredRead(desired.select(self.scope))

    async def _load(self, commit: str) -> DesiredState:
        if self._good is not None and self._good.revision == commit:
            return self._good  # the same commit as last cycle: no need to parse it again
        assert self._mirror is not None
        files, problems = await self._mirror.read(commit)
        self._good = await in_thread(parse_desired, files, commit, problems)
        return self._good


def resolve_desired(settings: Settings, *, remember: bool = False) -> DesiredState:
    """The desired state that `settings.desired` names, for the one-shot commands.

    With `remember`, a local file already found valid is not parsed again (see
    syncd.desired.memo). Only for a dry run: what is applied comes from the file.
    """
    location = parse_git_desired(settings.desired)
    if location is None:
        memo = DesiredMemo(settings.state_dir / "desired-memo") if remember else None
        return load_desired(settings.desired, memo)
    mirror = GitMirror(
        location, settings.state_dir, settings.git_timeout, git_credential_file(settings)
    )

    async def fetch_and_parse() -> DesiredState:
        commit = await mirror.fetch()
        files, problems = await mirror.read(commit)
        return parse_desired(files, commit, problems)

    return asyncio.run(fetch_and_parse())


def git_files(settings: Settings, commit: str | None) -> list[tuple[str, bytes]]:
    """The files of a git desired state at `commit`, read again from its mirror (for
    `render --explain`, which shows where each value is written); none for a path."""
    location = parse_git_desired(settings.desired)
    if location is None or commit is None:
        return []
    mirror = GitMirror(location, settings.state_dir, settings.git_timeout)
    return asyncio.run(mirror.read(commit))[0]


def git_credential_file(settings: Settings) -> GitCredentialFile | None:
    """SYNCD_GIT_CREDENTIALS_FILE, else `git.credentials` in the credentials directory if there."""
    directory = settings.credentials_dir
    if settings.git_credentials_file is not None:
        return GitCredentialFile(settings.git_credentials_file, directory)
    if directory is None:
        return None
    default = directory / f"{settings.credentials_prefix}{DEFAULT_FILE_NAME}"
    return GitCredentialFile(default, directory) if default.exists() else None
