"""Settings: the only code that reads the environment.

Precedence (design.md section 4): command-line flags, then `SYNCD_*`
environment variables, then a TOML config file (`--config` or `SYNCD_CONFIG`;
none is read unless named, so nothing on the host changes a run silently),
then the defaults below.
"""

from __future__ import annotations

import difflib
import json
import os
import re
import sys
import tomllib
from collections.abc import Callable
from ipaddress import ip_address
from pathlib import Path
from typing import Annotated, Any, Literal, get_args
from urllib.parse import parse_qsl, unquote, urlsplit, urlunsplit

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import ErrorDetails
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)
from pydantic_settings import SettingsError as SourceError

from syncd.core.vocabulary import NotificationEvent
from syncd.errors import SettingsError, UsageError
from syncd.redaction import MISREAD_ADVICE, git_spec_url, has_password, misread, redacted, userinfo
from syncd.secretfiles import shared_mode

#: libpq's parameters that are secrets: refused in SYNCD_STATE_URL, redacted wherever
#: a URL is shown (passfile names a file, and is no secret).
SECRET_PARAMETERS = frozenset({"password", "sslpassword"})
#: A `key=value` (or `key = value`) setting of a libpq conninfo string, which
#: SYNCD_STATE_URL is not: a path's own `=` follows a slash or a name, never a space.
_CONNINFO_TOKEN = re.compile(r"(?:^|\s)[A-Za-z_][A-Za-z0-9_]*\s*=")


def _port_problem(url: str) -> str | None:
    """What is wrong with the port of `url`, in words that never quote it: what looks
    like its port may be the start of a password."""
    if misread(url):  # urlsplit's user part would end early: its "port", its host, wrong
        return MISREAD_ADVICE
    try:
        if urlsplit(url).port != 0:
            return None
    except ValueError:  # not a number, or above 65535
        pass
    return "has an invalid port: the port after the host is a number from 1 to 65535"


def http_url_problem(url: str) -> str | None:
    """What makes `url` no http(s) URL to call, the API's or a notifier's (never quoting
    it: Slack's is its secret)."""
    parts = urlsplit(url)
    if parts.scheme not in {"http", "https"} or not parts.hostname:
        return "must be an http:// or https:// URL"
    return _port_problem(url)


def _http_url(url: str) -> str:
    if (problem := http_url_problem(url)) is not None:
        raise ValueError(problem)
    return url


#: A notifier's URL, wherever it is set.
_HttpUrl = Annotated[str, AfterValidator(_http_url)]


def _as_proxy_url(proxy: str) -> str:
    return proxy if "://" in proxy else f"http://{proxy}"  # as curl reads `host:port`


def _as_url(key: str, value: str) -> str:
    """The URL in the value of a URL setting: a proxy's `host:port` read as curl reads
    it, a git desired state without its `#ref:path` (which may hold `:` and `@`)."""
    if key.endswith("proxy"):
        return _as_proxy_url(value)
    return git_spec_url(value) if key == "desired" else value


def _default_state_dir() -> Path:
    # Under systemd, StateDirectory= sets $STATE_DIRECTORY.
    if state_directory := os.environ.get("STATE_DIRECTORY"):
        return Path(state_directory.split(":")[0])
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "syncd"


def _default_credentials_dir() -> Path | None:
    # Under systemd, LoadCredential= puts the files in $CREDENTIALS_DIRECTORY.
    directory = os.environ.get("CREDENTIALS_DIRECTORY")
    return Path(directory) if directory else None


def _from_environment(*names: str) -> Callable[[], str | None]:
    """The first of the conventional variables `names` that is set and not empty."""

    def read() -> str | None:
        for name in names:
            if value := os.environ.get(name, "").strip():
                return value
        return None

    return read


class NotifyProvider(BaseModel):
    """One `[[notify]]` of the settings file: where the daemon's notifications go."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: Literal["webhook", "slack"] = Field(
        description="webhook: signed JSON; slack: an incoming webhook's text message."
    )
    url: _HttpUrl | None = Field(None, description="Where to POST (or url_file).")
    url_file: Path | None = Field(
        None, description="File holding the URL, when the URL is itself a secret (Slack's)."
    )
    secret_file: Path | None = Field(
        None, description="For a webhook: the HMAC-SHA256 key of X-Syncd-Signature."
    )
    events: tuple[NotificationEvent, ...] = Field(
        tuple(NotificationEvent), description="The events wanted (each with its resolved)."
    )

    @model_validator(mode="after")
    def _one_url(self) -> NotifyProvider:
        if (self.url is None) == (self.url_file is None):
            raise ValueError("give url or url_file (one of them)")
        if self.type == "webhook" and self.secret_file is None:
            raise ValueError("a webhook needs secret_file: its messages are signed")
        return self


class Settings(BaseSettings):
    # An empty variable (`SYNCD_TOKEN=` in an env file) means "not set", not "".
    model_config = SettingsConfigDict(
        env_prefix="SYNCD_", extra="forbid", frozen=True, env_ignore_empty=True
    )

    api_url: str = Field(
        "https://www.docker.io", description="Base URL of the accounts API (no /api/v1.1)."
    )
    credentials_dir: Path | None = Field(
        default_factory=_default_credentials_dir,
        description="Directory of <username>.token / <username>.password files.",
    )
    credentials_prefix: str = Field(
        "",
        description="Prefix of the file names in the credentials directory: systemd's "
        "LoadCredential=ID:DIR names each file ID_<name>, so the unit sets it to 'ID_'.",
    )
    token: SecretStr | None = Field(
        None, description="Fallback bearer token for users without their own credential."
    )
    token_file: Path | None = Field(None, description="File holding the fallback token.")
    username: str | None = Field(None, description="Fallback Basic-auth user name.")
    password: SecretStr | None = Field(None, description="Fallback Basic-auth password.")
    state_dir: Path = Field(
        default_factory=_default_state_dir,
        description="Where syncd keeps its local files: the SQLite state files (unless "
        "state_url names another place), the git mirror, the memo of valid desired files.",
    )
    state_url: str | None = Field(
        None,
        description="Where the state lives: unset, the SQLite files in state_dir; a "
        "directory, the SQLite files there; postgresql://user@host:port/db, a PostgreSQL "
        "database that an active instance and its standbys share (needs syncd[postgres]). "
        "Never a password in it: see state_password_file.",
    )
    state_password_file: Path | None = Field(
        None,
        description="File holding the PostgreSQL password (as a credential file: 0600, "
        "regular); without it libpq's own means apply (PGPASSFILE, ~/.pgpass, PGPASSWORD).",
    )
    desired: str = Field(
        "desired-state.yaml",
        description="Desired-state file or directory, or git+https://, git+ssh://, "
        "git+file:// URL with #ref and :path (see syncd.desired.gitsource).",
    )
    concurrency: int = Field(
        32,
        ge=1,
        le=256,
        description="Requests in flight at most: the adaptive limit moves between 1 and this "
        "(one connection each).",
    )
    max_rate: float | None = Field(
        None,
        gt=0,
        description="Requests per second at most, for an operator who knows the server's "
        "limit; default: as fast as the server's rate-limit headers and answers allow.",
    )
    adaptive: bool = Field(
        True,
        description="Adapt the requests in flight (1 to concurrency) to the server's answers "
        "and pace by its RateLimit headers; false: always `concurrency` in flight, each 429 "
        "waiting only its own Retry-After (max_rate still applies).",
    )
    cache_ttl: float = Field(
        300,
        ge=0,
        description="Seconds `plan` and `apply` trust a cached answer (the daemon uses "
        "drift_window instead).",
    )
    drift_window: float = Field(
        1800,
        gt=0,
        description="Seconds within which the daemon reads every managed user again, spread "
        "evenly over its cycles: an out-of-band change is seen within window + interval.",
    )
    interval: float = Field(300, gt=0, description="Seconds between daemon runs.")
    not_kept_ttl: float = Field(
        30 * 86400,
        gt=0,
        description="Seconds a write the server accepted and did not keep is remembered (not "
        "sent again while the desired and the live value stay as recorded); then it is sent "
        "once more.",
    )
    run_deadline: float | None = Field(
        None,
        gt=0,
        description="Seconds a run may last before it is cancelled (writes in flight are "
        "audited as unknown): `plan` and `apply` have none by default, a daemon run three "
        "intervals, when /readyz turns 503 anyway.",
    )
    git_timeout: float = Field(
        120,
        gt=0,
        description="Seconds allowed for the whole fetch of a git+ desired state (and for "
        "reading its files); git and its helpers are killed when they are up.",
    )
    git_credentials_file: Path | None = Field(
        None,
        description="File holding the password or token for a git+https:// desired state "
        "(or 'username=' and 'password=' lines); default: git.credentials in the credentials "
        "directory, if it is there. It reaches git through a credential helper, never a "
        "command line.",
    )
    ca_file: Path | None = Field(
        None,
        description="PEM file of a private CA to trust for the API, besides the usual roots.",
    )
    ssl_cert_file: Path | None = Field(
        default_factory=_from_environment("SSL_CERT_FILE"),
        validate_default=True,  # to a Path
        description="PEM file of the roots to trust instead of certifi's (OpenSSL's "
        "SSL_CERT_FILE; e.g. the OS store, /etc/ssl/certs/ca-certificates.crt).",
    )
    ssl_cert_dir: Path | None = Field(
        default_factory=_from_environment("SSL_CERT_DIR"),
        validate_default=True,  # to a Path
        description="Directory of hashed root certificates to trust instead of certifi's "
        "(OpenSSL's SSL_CERT_DIR).",
    )
    https_proxy: str | None = Field(
        default_factory=_from_environment("https_proxy", "HTTPS_PROXY"),
        validate_default=True,  # a port that is no number, wherever it was set
        description="Proxy for an https:// API (https_proxy, HTTPS_PROXY); http:// or "
        "https:// proxies only. Never used for a loopback address.",
    )
    http_proxy: str | None = Field(
        default_factory=_from_environment("http_proxy", "HTTP_PROXY"),
        validate_default=True,  # a port that is no number, wherever it was set
        description="Proxy for an http:// API (http_proxy, HTTP_PROXY); never for loopback.",
    )
    all_proxy: str | None = Field(
        default_factory=_from_environment("all_proxy", "ALL_PROXY"),
        validate_default=True,  # a port that is no number, wherever it was set
        description="Proxy for either scheme when the one of its own is not set (all_proxy, "
        "ALL_PROXY).",
    )
    no_proxy: str | None = Field(
        default_factory=_from_environment("no_proxy", "NO_PROXY"),
        description="Hosts reached without a proxy (no_proxy, NO_PROXY): comma-separated "
        "names (with their subdomains), addresses, CIDR ranges such as 10.0.0.0/8, or *.",
    )
    max_deletions: int = Field(10, ge=0, description="Email deletions allowed per run.")
    log_format: Literal["auto", "json", "console"] = Field(
        "auto", description="Log renderer: console on a TTY, JSON lines otherwise."
    )
    metrics_addr: str | None = Field(
        None, description="host:port for /metrics, /healthz, /readyz and /hooks/git."
    )
    observe: bool = Field(
        False,
        description="The daemon plans and reports drift every cycle, and writes nothing "
        "(to gain trust before it converges).",
    )
    webhook_secret_file: Path | None = Field(
        None,
        description="File holding the secret of POST /hooks/git (GitHub's X-Hub-Signature-256 "
        "HMAC, or GitLab's X-Gitlab-Token): a valid push starts a cycle now.",
    )
    ui_token_file: Path | None = Field(
        None,
        description="File holding the token that the status pages (/, /users/NAME, /audit) "
        "ask for: HTTP Basic with it as the password, or a bearer header. Without it the "
        "pages are served only on a loopback metrics_addr.",
    )
    notify: tuple[NotifyProvider, ...] = Field(
        default_factory=tuple,
        description="Where the daemon sends notifications: `[[notify]]` tables of the "
        "settings file (type, url or url_file, secret_file, events).",
    )
    notify_url: _HttpUrl | None = Field(
        None, description="One webhook for every notification (with notify_secret_file)."
    )
    notify_secret_file: Path | None = Field(
        None, description="The HMAC-SHA256 key that signs the notify_url webhook's messages."
    )
    insecure_http: bool = Field(False, description="Allow http:// to a non-loopback host.")
    timeout: float = Field(30, gt=0, description="Seconds allowed for one HTTP request.")

    @property
    def notify_providers(self) -> tuple[NotifyProvider, ...]:
        """The `[[notify]]` providers, and the one of notify_url if set."""
        if self.notify_url is None:
            return self.notify
        single = NotifyProvider(
            type="webhook", url=self.notify_url, secret_file=self.notify_secret_file
        )
        return (*self.notify, single)

    @model_validator(mode="after")
    def _notify_url_is_signed(self) -> Settings:
        if self.notify_url is not None and self.notify_secret_file is None:
            raise ValueError("notify_url needs notify_secret_file: its messages are signed")
        return self

    @field_validator("https_proxy", "http_proxy", "all_proxy")
    @classmethod
    def _proxy_port(cls, proxy: str | None) -> str | None:
        if proxy is not None and (problem := _port_problem(_as_proxy_url(proxy))):
            raise ValueError(problem)
        return proxy

    @field_validator("desired")
    @classmethod
    def _git_port(cls, desired: str) -> str:
        if desired.startswith("git+") and (problem := _port_problem(git_spec_url(desired))):
            raise ValueError(problem)
        return desired

    @field_validator("token", "password")
    @classmethod
    def _empty_secret_is_none(cls, secret: SecretStr | None) -> SecretStr | None:
        return secret if secret is not None and secret.get_secret_value() else None

    @field_validator("state_url")
    @classmethod
    def _state_location(cls, url: str | None) -> str | None:
        if url is None or not url.strip():
            return None
        url = url.strip()
        if _CONNINFO_TOKEN.search(url):
            # libpq's `host=… password=… dbname=…` was taken for a directory: named with
            # the password, and each replica so configured was active. Not repeated: it
            # may hold a password.
            raise ValueError(
                "must be a directory or a postgresql:// URL, not key=value settings of "
                "libpq: write postgresql://user@host:port/dbname?sslmode=…"
            )
        scheme = urlsplit(url).scheme  # lower-cased
        if scheme in {"postgresql", "postgres"}:
            # The scheme's case is libpq's business, not a reason to fall back on a
            # SQLite directory named "POSTGRESQL:": replicas would each be active.
            url = scheme + url[len(scheme) :]
            if not url.startswith(f"{scheme}://"):
                raise ValueError(f"a PostgreSQL URL starts with {scheme}://")
            parts = urlsplit(url)
            query = {key.lower() for key, _ in parse_qsl(parts.query, keep_blank_values=True)}
            # The message must not repeat the URL: it would show the password.
            if has_password(url) or query & SECRET_PARAMETERS:
                raise ValueError(
                    "must not hold a password (user:password@, ?password= or ?sslpassword=): "
                    "put it in SYNCD_STATE_PASSWORD_FILE or a PGPASSFILE"
                )
            return url
        if scheme and len(scheme) > 1:  # "C:" would be a drive, but only on another OS
            raise ValueError(f"must be a directory or a postgresql:// URL, not {scheme}://")
        return url

    @field_validator("api_url")
    @classmethod
    def _strip_slash(cls, url: str) -> str:
        url = url.rstrip("/")
        # First, and not from urlsplit's netloc, which a `/` in the password ends
        # early (syncd.redaction): httpx would send it as Basic auth in place of every
        # user's own credential. The message must not repeat the URL: it holds a secret.
        if userinfo(url) is not None:
            raise ValueError(
                "must not hold a user name or password (user:password@…): put each "
                "user's credential in the credentials directory"
            )
        _http_url(url)
        if "?" in url or "#" in url:
            # Requests are built on the URL as given, while the cache and a saved plan
            # know the API without them: a cached answer would stand for another URL's.
            raise ValueError("must not hold a query (?…) or a fragment (#…)")
        return url

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # The TOML file is the one named in model_config: see load_settings.
        toml = TomlConfigSettingsSource(settings_cls)
        _refuse_shared_secrets(toml.toml_file_path, toml.toml_data)
        return (init_settings, env_settings, toml)

    @property
    def on_postgresql(self) -> bool:
        return self.state_url is not None and self.state_url.startswith(
            ("postgresql://", "postgres://")
        )

    @property
    def sqlite_dir(self) -> Path:
        """The directory of the SQLite state files: state_url when it is a path."""
        if self.state_url is None or self.on_postgresql:
            return self.state_dir
        return Path(self.state_url).expanduser()

    @property
    def state_file(self) -> Path:
        """syncd.db: the runs and the audit trail (history, never disposable)."""
        return self.sqlite_dir / "syncd.db"

    @property
    def state_location(self) -> str:
        """Where the history is, for messages: the file, or the URL (never with a password)."""
        if self.on_postgresql:
            assert self.state_url is not None
            return redact_url(self.state_url)
        return str(self.state_file)

    def variable(self, field: str) -> str:
        """Who set the roots setting `field`: ours when given (SYNCD_…, or TOML), else
        OpenSSL's variable, which its default reads."""
        return f"SYNCD_{field.upper()}" if field in self.model_fields_set else field.upper()

    def check_transport(self) -> None:
        """Refuse to send credentials in clear text to another machine."""
        parts = urlsplit(self.api_url)
        if parts.scheme == "https" or self.insecure_http:
            return
        host = parts.hostname or ""
        # Loopback is never proxied (syncd.api.transport): such a request stays here.
        if not is_loopback(host):
            raise UsageError(
                f"refusing to send credentials over plain http:// to {host}; "
                "use https:// or pass --insecure-http"
            )


#: Where each secret setting can live instead of a settings file that others may read.
_SECRET_ELSEWHERE = {
    "token": "move token to SYNCD_TOKEN_FILE or a credentials directory",
    "password": "move password to a <username>.password file in a credentials directory",
    "notify.url": "move notify.url to url_file, which syncd reads as it reads a token file",
    "desired": "move the credential to SYNCD_GIT_CREDENTIALS_FILE (or git.credentials in "
    "the credentials directory)",
}
#: The URLs that may hold a password (user:password@), a secret then. api_url and
#: state_url are not among them: their checks refuse a password wherever it is set.
_URL_SETTINGS = ("desired", "https_proxy", "http_proxy", "all_proxy", "notify_url")


def _refuse_shared_secrets(path: object, data: dict[str, Any]) -> None:
    """A settings file that holds a secret is a credential file: refused when others
    may read it, as syncd.secretfiles refuses a token file of mode 0644 (and libpq a
    .pgpass). Its other settings are not secret, so a file that holds none (the
    deployment's 0644 syncd.toml, read by the service's dynamic user) is not checked.
    A Slack webhook's URL is its secret (the docs say to keep it in url_file), and so
    is any URL that holds a password, or a git https:// URL that holds a user (a
    token, as `https://TOKEN@host/…` is often written; shown as *** too)."""
    held = [key for key in data if key in _SECRET_FIELDS]
    held += [
        key
        for key in _URL_SETTINGS
        if isinstance(url := data.get(key), str) and _holds_secret(key, _as_url(key, url))
    ]
    notify = data.get("notify")
    if isinstance(notify, list) and any(
        isinstance(p, dict)
        and isinstance(url := p.get("url"), str)
        and (p.get("type") == "slack" or has_password(url))
        for p in notify
    ):
        held.append("notify.url")
    if not held or not isinstance(path, str | os.PathLike):
        return
    if (mode := shared_mode(path)) is not None:
        key = held[0]
        what = f"a credential in {key}" if key in _URL_SETTINGS else key  # never the secret
        # First where the secret belongs: the file is often shared on purpose (the
        # deployment's syncd.toml is root's, read by the service's dynamic user).
        fix = _SECRET_ELSEWHERE.get(key, f"move {key} to SYNCD_{key.upper()}")
        if os.stat(path).st_uid == os.geteuid():
            fix += ", or chmod 600 the file if only you read it"
        raise SettingsError(
            f"config file {os.fspath(path)} holds {what} but group or others may read it "
            f"(mode {mode:04o}): {fix}"
        )


def _holds_secret(key: str, url: str) -> bool:
    if key == "desired" and url.startswith("https://"):
        return userinfo(url) is not None
    return has_password(url)


def redact_url(url: str) -> str:
    """A URL without its secrets, wherever they were (user:password@, ?password=,
    ?sslpassword=), for messages."""
    parts = urlsplit(redacted(url, keep_user=True))
    # Each parameter as written, but a secret's value.
    query = "&".join(
        f"{key}=…" if unquote(key).lower() in SECRET_PARAMETERS else parameter
        for parameter in parts.query.split("&")
        for key in [parameter.partition("=")[0]]
    )
    return urlunsplit(parts._replace(query=query))


def is_loopback(host: str) -> bool:
    """Whether a URL's host (lower case, without brackets) is this machine's loopback."""
    if host == "localhost":
        return True
    try:
        address = ip_address(host)
    except ValueError:
        return False
    mapped = getattr(address, "ipv4_mapped", None)
    return address.is_loopback or (mapped is not None and mapped.is_loopback)


#: The settings that are secrets (SecretStr): never in a file that others may read.
_SECRET_FIELDS = frozenset(
    name for name, info in Settings.model_fields.items() if SecretStr in get_args(info.annotation)
)


def _near_miss(name: str) -> str | None:
    """The setting that the unknown `name` (lower case, without SYNCD_) was likely meant to be."""
    known = [*Settings.model_fields, "config"]  # SYNCD_CONFIG is no field, and no typo
    if name in known:
        return None
    close = difflib.get_close_matches(name, known, n=1, cutoff=0.75)
    return close[0] if close else None


def _warn_near_misses() -> None:
    """One stderr line per SYNCD_ variable that is no setting but looks like one.

    pydantic-settings ignores an unknown variable (a TOML file's unknown key is an
    error, but the environment holds variables of other programs). Only a near
    miss is named: a SYNCD_ variable like none of ours may belong to a wrapper
    (the GitOps workflow's SYNCD_PACKAGE), while SYNCD_MAX_DELETION is a typo
    that would silently leave the default in force.
    """
    for variable in sorted(os.environ):
        if not variable.upper().startswith("SYNCD_"):
            continue
        if (meant := _near_miss(variable[len("SYNCD_") :].lower())) is not None:
            print(
                f"syncd: warning: {variable} is not a setting and is ignored "
                f"(did you mean SYNCD_{meant.upper()}?)",
                file=sys.stderr,
            )


def load_settings(config_file: str | None = None, **overrides: Any) -> Settings:
    """Settings from flags (`overrides`, None = not given), environment, config file, defaults."""
    _warn_near_misses()
    config = config_file or os.environ.get("SYNCD_CONFIG")
    if config and not Path(config).is_file():
        raise SettingsError(f"config file {config}: no such file")
    given = {key: value for key, value in overrides.items() if value is not None}
    settings_class = Settings
    if config:

        class SettingsWithFile(Settings):
            model_config = SettingsConfigDict(toml_file=config)

        settings_class = SettingsWithFile
    try:
        return settings_class(**given)
    except tomllib.TOMLDecodeError as error:
        raise SettingsError(f"config file {config}: {error}") from None
    except OSError as error:  # a file this user may not read (its mode, its directory)
        raise SettingsError(f"config file {config}: {error.strerror or error}") from None
    except ValidationError as error:
        problems = "; ".join(_problem(problem, given, config) for problem in error.errors())
        raise SettingsError(f"invalid settings: {problems}") from None
    except SourceError as error:
        # A list setting's variable (SYNCD_NOTIFY) that is not JSON: pydantic-settings
        # names the field in its message, and the JSON error is the cause.
        field = re.search(r'field "(\w+)"', str(error))
        name = field[1] if field else "settings"
        cause = error.__cause__
        why = (
            f"{cause.msg} at column {cause.colno}"
            if isinstance(cause, json.JSONDecodeError)
            else cause
        )
        raise SettingsError(
            f"invalid settings: {name} (SYNCD_{name.upper()}): should be JSON: {why}"
        ) from None


#: The flags whose names are not their settings' (`--api-url` is api_url's).
_FLAGS = {"desired": "--file"}


def _problem(error: ErrorDetails, given: dict[str, Any], config: str | None) -> str:
    """One validation error as `key (where it was set): message`, an unknown key with its
    near miss; where: the flag, else the variable, else the config file, in the order
    they win (an unknown key can only be the file's: unknown variables are ignored),
    but a proxy's curl variable when the value is that variable's."""
    key = ".".join(map(str, error["loc"])) or "settings"
    field = str(error["loc"][0]) if error["loc"] else ""
    variable = f"SYNCD_{field.upper()}"
    if field in given:
        where = f" ({_FLAGS.get(field, '--' + field.replace('_', '-'))})"
    elif error["type"] != "extra_forbidden" and os.environ.get(variable):
        where = f" ({variable})"
    elif (curls := _curl_variable(field, error["input"])) is not None:
        where = f" ({curls})"
    else:
        where = f" (config file {config})" if config else ""
    if error["type"] == "extra_forbidden":
        meant = _near_miss(key)
        return f"{key}{where}: unknown setting" + (f" (did you mean {meant}?)" if meant else "")
    # pydantic's wording, in ours: "Value error, must be…" is our validator's "must be…".
    message = error["msg"].removeprefix("Value error, ").replace("Input should be", "should be")
    return f"{key}{where}: {message}"


def _curl_variable(field: str, value: object) -> str | None:
    """The variable of curl's (https_proxy, HTTPS_PROXY…) that gave a proxy setting its
    `value`, if one did: a config file's key wins over it, so the value tells which."""
    if not field.endswith("_proxy"):
        return None
    names = (field, field.upper())
    return next((name for name in names if os.environ.get(name, "").strip() == value), None)
