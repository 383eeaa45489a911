"""The credential of a git+https:// desired state, and how it reaches git off every command line.

git hands the URL of a remote to `git-remote-https` as an argument: a password
in `https://user:pass@host/…` was readable by any local user in `ps`. So the
URL that git is given never holds one. The credential comes from the URL's
user info, moved out of it before git runs, or else from a file
(`SYNCD_GIT_CREDENTIALS_FILE`, by default `git.credentials` in the credentials
directory: systemd's `LoadCredential=` hands it over as the others). The file
holds the password or token alone, or git's own `username=` and `password=`
lines; the file is checked as every credential file is (syncd.secretfiles).

It reaches git through a credential helper that syncd configures for that one
command in the environment (GIT_CONFIG_COUNT): the list of helpers is emptied
first, so that no helper of the host's configuration stores the secret, and
the helper is a shell function that prints two variables of its environment
with the shell's own printf. The secret is in the environment of git and its
children, which only their user can read, and on no command line. The helper
answers only for the configured remote's protocol, host and port (and path,
when git gives one), and git follows no redirect: the credential goes nowhere
else.

Without a user name, git is told `x-access-token`, which GitHub, Gitea and
Forgejo take for a token (GitLab takes any name).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote, urlsplit

from syncd.errors import CredentialError, UsageError
from syncd.secretfiles import read_secret_file

DEFAULT_FILE_NAME = "git.credentials"
DEFAULT_USERNAME = "x-access-token"
# Run by git through the shell; printf is the shell's builtin, so no process is
# started with the secret among its arguments. Only `get` is answered: git's
# `store` and `erase` have nothing to do here. git says on stdin what it wants a
# credential for (protocol=, host= with the port, path= when it gives one); the
# helper answers only for the remote it was configured with: a redirect, or any
# other URL git meets, gets nothing (a 302 to http://elsewhere received the token).
_HELPER = (
    '!f() { test "$1" = get || return 0; p=; h=; '
    'while IFS= read -r l && test -n "$l"; do case "$l" in '
    'protocol=*) p="${l#protocol=}";; host=*) h="${l#host=}";; '
    'path=*) test "${l#path=}" = "$SYNCD_GIT_PATH" || return 0;; esac; done; '
    'test "$p" = "$SYNCD_GIT_PROTOCOL" && test "$h" = "$SYNCD_GIT_HOST" || return 0; '
    'printf \'username=%s\\npassword=%s\\n\' "$SYNCD_GIT_USERNAME" "$SYNCD_GIT_PASSWORD"; }; f'
)
# Configuration for the one command that holds the credential.
_CONFIG = (
    # No helper of the host's configuration sees (or stores) the secret: the list of
    # helpers is emptied before ours.
    ("credential.helper", ""),
    ("credential.helper", _HELPER),
    # git then tells the helper the repository's path too, which must be ours.
    ("credential.useHttpPath", "true"),
    # A redirect is never followed (git's default follows the first request's): the
    # configured URL is where the repository is, and a server that names another
    # place, perhaps over plain http, is sending the credential there. A moved
    # repository is a setting to correct, and git's message says so.
    ("http.followRedirects", "false"),
)


@dataclass(frozen=True, slots=True)
class GitCredential:
    """A user name and password for git over https; `source` says where, never what."""

    username: str
    source: str
    password: str = field(repr=False)

    def environment(self, base: dict[str, str], remote: str) -> dict[str, str]:
        """`base` with this credential's helper configured for one git command that
        fetches from `remote` (an https URL without user info), and for no other URL."""
        environment = dict(base)
        add_git_config(environment, _CONFIG)
        parts = urlsplit(remote)
        environment["SYNCD_GIT_PROTOCOL"] = parts.scheme
        # As git writes them: the host with its port, the path without its leading slash.
        environment["SYNCD_GIT_HOST"] = parts.netloc.rpartition("@")[2]
        environment["SYNCD_GIT_PATH"] = unquote(parts.path).strip("/")
        environment["SYNCD_GIT_USERNAME"] = self.username
        environment["SYNCD_GIT_PASSWORD"] = self.password
        return environment


@dataclass(frozen=True, slots=True)
class GitCredentialFile:
    """Where a git credential may be read: the file, and the credentials directory."""

    path: Path
    directory: Path | None = None

    def read(self, username: str | None) -> GitCredential:
        """The credential in the file; `username` (the URL's) if the file names none."""
        text = read_secret_file(self.path, self.directory, what="git credential file")
        fields = dict(line.partition("=")[::2] for line in text.splitlines() if "=" in line)
        if {"username", "password"} & set(fields):
            password = fields.get("password", "")
            username = fields.get("username") or username
        else:
            password = text
        if not password or "\n" in password or "\0" in password:
            raise CredentialError(
                f"git credential {self.path}: expected one line, the password or token"
            )
        return GitCredential(username or DEFAULT_USERNAME, str(self.path), password)


def credential_for(url: str, file: GitCredentialFile | None) -> tuple[str, GitCredential | None]:
    """The URL to give git (without user info) and the credential to give its helper, if any.

    The URL's own credential wins over the file's; the file is read at each
    fetch, so a rotated secret is used without a restart. An https user name
    alone (`https://TOKEN@host/…`, how a token is often written) is a secret
    too: without a file, git is given it as the user, with an empty password,
    as git itself would send it, and never in the URL. For ssh the user name
    stays in the URL: it is a name, and may be all that ssh needs.
    """
    parts = urlsplit(url)
    username = unquote(parts.username or "")
    if parts.password is not None:
        if parts.scheme != "https":
            raise UsageError(
                f"git+{_bare(url)}: a password in a git+{parts.scheme}:// URL is never used; "
                "use a key (GIT_SSH_COMMAND) instead"
            )
        password = unquote(parts.password)
        return _bare(url), GitCredential(username or DEFAULT_USERNAME, "the URL", password)
    if parts.scheme != "https":
        return url, None
    if file is not None:
        return _bare(url), file.read(username or None)
    return _bare(url), GitCredential(username, "the URL", "") if username else None


def add_git_config(environment: dict[str, str], pairs: Iterable[tuple[str, str]]) -> None:
    """Adds `pairs` to the configuration of the one git command run in `environment`."""
    index = int(environment.get("GIT_CONFIG_COUNT", "0") or 0)
    for key, value in pairs:
        environment[f"GIT_CONFIG_KEY_{index}"] = key
        environment[f"GIT_CONFIG_VALUE_{index}"] = value
        index += 1
    environment["GIT_CONFIG_COUNT"] = str(index)


def _bare(url: str) -> str:
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url
    return parts._replace(netloc=parts.netloc.rpartition("@")[2]).geturl()
