"""Credential files are checked as ssh checks a key; nothing is sent with a refused one."""

from __future__ import annotations

import contextlib
import os
import struct
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from syncd.cli.main import cli
from tests.security.conftest import run_syncd
from tests.world import World, write_secret

ONLY_JANE = {"version": 1, "users": {"janedoe": {"full_name": "Jane Doe"}}}


def run(world: World, command: str, *args: str, **env: str) -> Result:
    runner = CliRunner(env=env)
    return runner.invoke(cli, [command, *world.cli_args(), *args], catch_exceptions=False)


def jane_token(world: World) -> Path:
    return world.credentials_dir / "janedoe.token"


def test_a_token_others_can_read_is_refused_and_nothing_sent(world: World):
    # A 0644 token was used without a word.
    world.desire(ONLY_JANE)
    jane_token(world).chmod(0o644)
    result = run(world, "plan")
    assert result.exit_code == 1
    assert "janedoe: credential_refused" in result.stdout
    assert "janedoe.token refused: group or others may read it (mode 0644)" in result.stdout
    assert world.gets() == 0


@pytest.mark.parametrize("target", ["outside", "/dev/zero"])
def test_a_link_out_of_the_credentials_directory_is_refused(world: World, target: str):
    # A link to any file was read and sent as a password; /dev/zero ended in a
    # MemoryError at 1.35 GB.
    world.desire(ONLY_JANE)
    outside = world.root / "not-a-credential.txt"
    outside.write_text("some file of the host\n")
    jane_token(world).unlink()
    jane_token(world).symlink_to(outside if target == "outside" else target)
    finished = run_syncd("plan", *world.cli_args(), timeout=60)
    assert finished.returncode == 1
    assert "to a file outside the credentials directory" in finished.stdout
    assert finished.peak_rss_mb < 150
    assert world.gets() == 0


def test_a_link_inside_the_credentials_directory_is_followed(world: World):
    world.desire(ONLY_JANE)
    real = world.credentials_dir / "jane-2026.secret"
    jane_token(world).rename(real)
    jane_token(world).symlink_to(real.name)
    result = run(world, "plan")
    assert result.exit_code == 0, result.output
    assert "Plan: 1 change for 1 user" in result.stdout


NOBODY = 65534


def as_root() -> None:
    if os.geteuid() != 0:
        pytest.skip("only root can give a file to another user")


@pytest.mark.parametrize("directory_mode", [0o777, 0o770, 0o1777], ids=["0777", "0770", "1777"])
def test_a_credentials_directory_others_may_write_is_refused_in_one_line(
    world: World, directory_mode: int
):
    # With the directory 0777, another user replaced bobsmith.token by a link to
    # janedoe.password: her password went out as his bearer token, without a word.
    as_root()
    world.desire(ONLY_JANE)
    directory = world.credentials_dir
    write_secret(directory / "janedoe.password", "jane-password\n")
    (directory / "johnsmith.token").unlink()
    (directory / "johnsmith.token").symlink_to("janedoe.password")
    os.lchown(directory / "johnsmith.token", NOBODY, NOBODY)
    directory.chmod(directory_mode)
    result = run(world, "plan")
    assert result.exit_code == 1
    assert result.stderr == (
        f"syncd: credentials directory {directory} refused: group or others may write it "
        f"(mode {directory_mode:04o}), and so swap any credential in it; "
        f"chmod go-w {directory}\n"
    )
    assert world.gets() == 0


def test_a_credentials_directory_of_another_user_is_refused(world: World):
    as_root()
    world.desire(ONLY_JANE)
    os.chown(world.credentials_dir, NOBODY, NOBODY)
    result = run(world, "plan")
    assert result.exit_code == 1
    assert result.stderr == (
        f"syncd: credentials directory {world.credentials_dir} refused: it belongs to uid "
        f"{NOBODY}, neither the running user nor root, who may swap any credential in it; "
        "chown it to one of them\n"
    )
    assert world.gets() == 0


def test_a_link_of_another_user_is_refused_even_in_a_private_directory(world: World):
    as_root()
    world.desire(ONLY_JANE)
    real = world.credentials_dir / "jane-2026.secret"
    jane_token(world).rename(real)
    jane_token(world).symlink_to(real.name)
    os.lchown(jane_token(world), NOBODY, NOBODY)
    result = run(world, "plan")
    assert result.exit_code == 1
    assert (
        f"✗ janedoe: credential_refused: credential {jane_token(world)} refused: it is a "
        f"symbolic link that belongs to uid {NOBODY}, neither the running user nor root; "
        "nothing was sent with it\n"
    ) in result.stdout
    assert world.gets() == 0


def test_systemds_credentials_directory_is_read(world: World):
    # LoadCredential=syncd:DIR: a directory 0500 of the service's user (or root), each
    # file 0400 and named syncd_<file>.
    world.desire(ONLY_JANE)
    directory = world.credentials_dir
    token = jane_token(world).read_text()
    for entry in directory.iterdir():
        entry.unlink()
    write_secret(directory / "syncd_janedoe.token", token)
    (directory / "syncd_janedoe.token").chmod(0o400)
    directory.chmod(0o500)
    result = run(world, "plan", SYNCD_CREDENTIALS_PREFIX="syncd_")
    assert result.exit_code == 0, result.output
    assert "Plan: 1 change for 1 user" in result.stdout


@pytest.mark.parametrize("passed", ["a-directory-others-may-write", "a-directory-of-another-user"])
def test_a_link_through_a_directory_someone_else_may_change_is_refused(world: World, passed: str):
    # janedoe.token -> sub/janedoe.token, sub/ 0777: another user replaced that file
    # by a link to ../johnsmith.token, and John's token went out as Jane's. Only the
    # first link and the credentials directory were checked; realpath did the rest.
    as_root()
    world.desire(ONLY_JANE)
    directory = world.credentials_dir
    sub = directory / "sub"
    sub.mkdir(mode=0o700)
    jane_token(world).rename(sub / "janedoe.token")
    jane_token(world).symlink_to("sub/janedoe.token")
    (sub / "janedoe.token").unlink()
    # Their link would be refused as theirs; a swap that leaves an entry of root's (a
    # hard link to John's file where fs.protected_hardlinks is 0, a rename) is not.
    (sub / "janedoe.token").symlink_to("../johnsmith.token")
    if passed == "a-directory-others-may-write":
        sub.chmod(0o777)
        expected = (
            f"it is a symbolic link through {sub}, which is refused: group or others may "
            f"write it (mode 0777), and so swap any credential in it; chmod go-w {sub}"
        )
    else:
        os.chown(sub, NOBODY, NOBODY)
        expected = (
            f"it is a symbolic link through {sub}, which is refused: it belongs to uid "
            f"{NOBODY}, neither the running user nor root, who may swap any credential in "
            "it; chown it to one of them"
        )
    result = run(world, "plan")
    assert result.exit_code == 1
    assert (
        f"✗ janedoe: credential_refused: credential {jane_token(world)} refused: {expected}; "
        "nothing was sent with it\n"
    ) in result.stdout
    assert world.gets() == 0


def test_a_link_of_another_user_on_the_way_is_refused(world: World):
    # The same swap in a private subdirectory: the second link is nobody's word.
    as_root()
    world.desire(ONLY_JANE)
    sub = world.credentials_dir / "sub"
    sub.mkdir(mode=0o700)
    jane_token(world).unlink()
    jane_token(world).symlink_to("sub/janedoe.token")
    (sub / "janedoe.token").symlink_to("../johnsmith.token")
    os.lchown(sub / "janedoe.token", NOBODY, NOBODY)
    result = run(world, "plan")
    assert result.exit_code == 1
    assert (
        f"credential {jane_token(world)} refused: {sub / 'janedoe.token'}, on the way, is a "
        f"symbolic link that belongs to uid {NOBODY}, neither the running user nor root"
    ) in result.stdout
    assert world.gets() == 0


def test_a_kubernetes_secrets_links_are_followed(world: World):
    # A Secret's volume: janedoe.token -> ..data/janedoe.token, ..data -> ..2026_…/,
    # all root's, the timestamped directory 0755. (Mounted as it is, the volume's own
    # root is 1777: refused below; deploy/kubernetes copies the files instead.)
    world.desire(ONLY_JANE)
    directory = world.credentials_dir
    token = jane_token(world).read_text()
    jane_token(world).unlink()
    (directory / "..2026_12_07_10_00_00.1").mkdir(mode=0o755)
    write_secret(directory / "..2026_12_07_10_00_00.1" / "janedoe.token", token)
    (directory / "..data").symlink_to("..2026_12_07_10_00_00.1")
    jane_token(world).symlink_to("..data/janedoe.token")
    result = run(world, "plan")
    assert result.exit_code == 0, result.output
    assert "Plan: 1 change for 1 user" in result.stdout


@contextlib.contextmanager
def read_only_volume(path: Path, fill: Callable[[Path], None]) -> Iterator[None]:
    """`path` as Kubernetes mounts a volume `readOnly`: a tmpfs that `fill` wrote."""
    try:
        subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(path)],
            check=True,
            capture_output=True,
        )
    except (OSError, subprocess.CalledProcessError) as error:
        pytest.skip(f"cannot mount a tmpfs here: {error}")
    try:
        fill(path)
        subprocess.run(["mount", "-o", "remount,ro", str(path)], check=True)
        yield
    finally:
        subprocess.run(["umount", str(path)], check=True)


@pytest.mark.parametrize("layout", ["secret-volume", "emptyDir", "emptyDir-subdirectory"])
def test_a_directory_others_may_write_is_refused_even_mounted_read_only(world: World, layout: str):
    # A read-only bind of a 0777 directory passed: read-only where syncd looks, while
    # another user swapped the files at its source. So the write bits count on a
    # read-only mount too. deploy/kubernetes's init container makes a 0700 directory
    # of its own inside the emptyDir (2777) and copies the files there: that passes.
    world.desire(ONLY_JANE)
    token = jane_token(world).read_text()
    volume = world.root / "volume"
    volume.mkdir()

    def fill(volume: Path) -> None:
        if layout == "secret-volume":
            volume.chmod(0o1777)
            (volume / "..2026_12_07_10_00_00.1").mkdir(mode=0o755)
            write_secret(volume / "..2026_12_07_10_00_00.1" / "janedoe.token", token)
            (volume / "..data").symlink_to("..2026_12_07_10_00_00.1")
            (volume / "janedoe.token").symlink_to("..data/janedoe.token")
        else:
            volume.chmod(0o2777)
            (volume / "private").mkdir(mode=0o700)
            write_secret(volume / "private" / "janedoe.token", token)
            write_secret(volume / "janedoe.token", token)

    with read_only_volume(volume, fill):
        directory = volume / "private" if layout == "emptyDir-subdirectory" else volume
        result = run(world, "plan", "--credentials-dir", str(directory))  # the last one counts
        if layout == "emptyDir-subdirectory":
            assert result.exit_code == 0, result.output
            assert "Plan: 1 change for 1 user" in result.stdout
            return
        mode = 0o1777 if layout == "secret-volume" else 0o2777
        assert result.exit_code == 1
        assert result.stderr == (
            f"syncd: credentials directory {directory} refused: group or others may write it "
            f"(mode {mode:04o}), and so swap any credential in it; chmod go-w {directory}\n"
        )
        assert world.gets() == 0


def test_a_fifo_is_refused_without_waiting(world: World):
    # A FIFO hung the run, waiting for a writer.
    world.desire(ONLY_JANE)
    jane_token(world).unlink()
    os.mkfifo(jane_token(world), 0o600)
    finished = run_syncd("plan", *world.cli_args(), timeout=60)
    assert finished.returncode == 1
    assert "janedoe.token refused: it is not a regular file" in finished.stdout
    assert finished.seconds < 30
    assert world.gets() == 0


def test_a_credential_larger_than_64_kib_is_refused(world: World):
    world.desire(ONLY_JANE)
    write_secret(jane_token(world), "x" * (64 * 1024 + 1))
    result = run(world, "plan")
    assert "janedoe.token refused: it is larger than 64 KiB" in result.stdout
    assert world.gets() == 0


@pytest.mark.parametrize("content", ["", "\n", " \t\n\n"], ids=["empty", "newline", "blank"])
@pytest.mark.parametrize("fallback", [False, True], ids=["alone", "with-fallback"])
def test_an_empty_credential_file_is_refused_as_empty(world: World, content: str, fallback: bool):
    # It read "no credential file for this user", the file right there; with a
    # fallback token, the fallback stood in for the credential the file was meant to be.
    world.desire(ONLY_JANE)
    write_secret(jane_token(world), content)
    result = run(world, "plan", **({"SYNCD_TOKEN": "tok-john"} if fallback else {}))
    assert result.exit_code == 1
    assert (
        f"✗ janedoe: credential_refused: credential {jane_token(world)} refused: "
        "it is empty (nothing but white space); nothing was sent with it\n"
    ) in result.stdout
    assert world.gets() == 0


def test_an_empty_fallback_token_file_is_refused_as_empty(world: World):
    token_file = world.root / "fallback.token"
    write_secret(token_file, "\n")
    result = run(world, "plan", SYNCD_TOKEN_FILE=str(token_file))
    assert result.exit_code == 1
    assert (
        result.stderr
        == f"syncd: credential {token_file} refused: it is empty (nothing but white space); "
        "nothing was sent with it\n"
    )
    assert world.gets() == 0


def test_a_token_with_its_bearer_prefix_says_to_leave_the_prefix_out(world: World):
    world.desire(ONLY_JANE)
    write_secret(jane_token(world), "Bearer tok-jane\n")
    result = run(world, "plan")
    assert result.exit_code == 1
    assert (
        f"credential {jane_token(world)}: drop the 'Bearer ' prefix: syncd adds it"
    ) in result.stdout
    assert "tok-jane" not in result.output
    assert world.gets() == 0


def _acl(*entries: tuple[int, int, int]) -> bytes:
    """A POSIX ACL in Linux's system.posix_acl_access format (the kernel wants it sorted)."""
    return struct.pack("<I", 2) + b"".join(struct.pack("<HHI", *e) for e in sorted(entries))


UNDEFINED = 0xFFFFFFFF
USER_OBJ, USER, GROUP_OBJ, GROUP, MASK, OTHER = 0x01, 0x02, 0x04, 0x08, 0x10, 0x20


@pytest.mark.parametrize(
    ("extra", "accepted"),
    [
        # What systemd gives a service: read for its user alone (the mask shows as g=r).
        pytest.param((USER, 4, os.geteuid()), True, id="the-running-user"),
        pytest.param((USER, 4, 4242), False, id="another-user"),
        pytest.param((GROUP, 4, 4242), False, id="a-group"),
    ],
)
def test_a_file_readable_through_an_acl_is_judged_by_the_acl(
    world: World, extra: tuple[int, int, int], accepted: bool
):
    world.desire(ONLY_JANE)
    token = jane_token(world)
    acl = _acl(
        (USER_OBJ, 6, UNDEFINED),
        extra,
        (GROUP_OBJ, 0, UNDEFINED),
        (MASK, 4, UNDEFINED),
        (OTHER, 0, UNDEFINED),
    )
    try:
        os.setxattr(token, "system.posix_acl_access", acl)
    except OSError as error:
        pytest.skip(f"no POSIX ACLs here: {error}")
    assert token.stat().st_mode & 0o040  # the mask: what a look at the mode alone refuses
    result = run(world, "plan")
    if accepted:
        assert result.exit_code == 0, result.output
    else:
        assert "group or others may read it (mode 0640)" in result.stdout
        assert world.gets() == 0


def test_a_fallback_token_file_others_can_read_is_one_line(world: World):
    token_file = world.root / "fallback.token"
    token_file.write_text("fallback-secret\n")
    token_file.chmod(0o644)
    result = run(world, "plan", SYNCD_TOKEN_FILE=str(token_file))
    assert result.exit_code == 1
    assert result.stderr.startswith("syncd: credential ")
    assert "fallback.token refused: group or others may read it" in result.stderr
    assert "fallback-secret" not in result.output
    assert world.gets() == 0


def test_an_api_url_with_a_password_is_refused_without_showing_it(world: World):
    # It was logged with the password, and replaced every user's own credential.
    url = world.sandbox.url.replace("http://", "http://admin:hunter2-pw@")
    result = CliRunner().invoke(
        cli, ["plan", *world.cli_args(), "--api-url", url], catch_exceptions=False
    )
    assert result.exit_code == 1
    assert "api_url" in result.stderr
    assert "must not hold a user name or password" in result.stderr
    assert "hunter2-pw" not in result.output
    assert len(result.stderr.splitlines()) == 1
    assert world.gets() == 0


@pytest.mark.parametrize("name", ["..token", "..password", "Jane.Doe.token"])
def test_import_refuses_a_credential_file_that_names_no_user(world: World, name: str):
    # `..token` became GET /api/v1.1/.
    write_secret(world.credentials_dir / name, "tok-jane\n")
    result = CliRunner().invoke(cli, ["import", *world.api_args()], catch_exceptions=False)
    assert result.exit_code == 1
    assert result.stderr.startswith(f"syncd: credentials directory {world.credentials_dir}:")
    assert "not a username" in result.stderr
    assert "nothing imported, nothing sent" in result.stderr
    assert world.gets() == 0


def test_import_refuses_a_user_option_that_is_no_username(world: World):
    result = CliRunner().invoke(
        cli, ["import", *world.api_args(), "--user", "../admin"], catch_exceptions=False
    )
    assert result.exit_code == 1
    assert "syncd: --user: not a username" in result.stderr
    assert world.gets() == 0


@pytest.mark.parametrize(
    ("content", "mode", "refused"),
    [
        pytest.param('token = "tok-jane"\n', 0o644, "token", id="token-0644"),
        pytest.param('token = "tok-jane"\n', 0o640, "token", id="token-0640"),
        pytest.param('username = "janedoe"\npassword = "pw"\n', 0o604, "password", id="password"),
        pytest.param('token = "tok-jane"\n', 0o600, None, id="token-0600"),
        pytest.param("max_deletions = 5\n", 0o644, None, id="no-secret-0644"),
        pytest.param(
            '[[notify]]\ntype = "slack"\nurl = "https://hooks.example/T0/B0/s3cret"\n',
            0o644,
            "notify.url",
            id="slack-url-0644",
        ),
    ],
)
def test_a_config_file_holding_a_secret_is_refused_if_others_may_read_it(
    world: World, content: str, mode: int, refused: str | None
):
    # A 0644 TOML file's token was used without a word, while a 0644 token file is refused.
    world.desire(ONLY_JANE)
    if "token" in content:  # so that only the file's token can authenticate her
        jane_token(world).unlink()
    config = world.root / "syncd.toml"
    config.write_text(content)
    config.chmod(mode)
    result = run(world, "plan", "--config", str(config))
    if refused is None:
        assert result.exit_code == 0, result.output
        assert "Plan: 1 change for 1 user" in result.stdout
        return
    elsewhere = {
        "token": "SYNCD_TOKEN_FILE or a credentials directory",
        "password": "a <username>.password file in a credentials directory",
        "notify.url": "url_file, which syncd reads as it reads a token file",
    }[refused]
    assert result.exit_code == 1
    assert result.stderr == (
        f"syncd: config file {config} holds {refused} but group or others may read it "
        f"(mode {mode:04o}): move {refused} to {elsewhere}, "
        "or chmod 600 the file if only you read it\n"
    )
    assert world.gets() == 0


@pytest.mark.parametrize(
    ("content", "refused", "fix"),
    [
        pytest.param(
            'https_proxy = "http://alice:TOMLPROXYPASS9@127.0.0.1:3199"\n',
            "a credential in https_proxy",
            "move https_proxy to SYNCD_HTTPS_PROXY",
            id="https_proxy",
        ),
        pytest.param(  # a password whose unencoded / ends the user part for urlsplit
            'all_proxy = "alice:TOML/PROXYPASS9@127.0.0.1:3199"\n',
            "a credential in all_proxy",
            "move all_proxy to SYNCD_ALL_PROXY",
            id="all_proxy-without-scheme",
        ),
        pytest.param(
            'desired = "git+https://alice:GITTOKENSECRET77@127.0.0.1:8443/acc.git#main:acc"\n',
            "a credential in desired",
            "move the credential to SYNCD_GIT_CREDENTIALS_FILE (or git.credentials in the "
            "credentials directory)",
            id="git-desired",
        ),
        pytest.param(  # a token written as the user, as GitHub's are
            'desired = "git+https://GITTOKENSECRET77@127.0.0.1:8443/acc.git#main:acc"\n',
            "a credential in desired",
            "move the credential to SYNCD_GIT_CREDENTIALS_FILE (or git.credentials in the "
            "credentials directory)",
            id="git-desired-token-as-user",
        ),
        pytest.param(
            'notify_url = "https://bob:NOTIFYPASS@hooks.example/x"\n'
            'notify_secret_file = "/etc/syncd/notify.key"\n',
            "a credential in notify_url",
            "move notify_url to SYNCD_NOTIFY_URL",
            id="notify_url",
        ),
        pytest.param(
            '[[notify]]\ntype = "webhook"\nurl = "https://bob:NOTIFYPASS@hooks.example/x"\n'
            'secret_file = "/etc/syncd/notify.key"\n',
            "notify.url",
            "move notify.url to url_file, which syncd reads as it reads a token file",
            id="webhook-url",
        ),
    ],
)
def test_a_url_with_a_password_makes_a_config_file_a_credential_file(
    world: World, content: str, refused: str, fix: str
):
    # A proxy's password and a git token in a 0644 syncd.toml were used without a word.
    world.desire(ONLY_JANE)
    config = world.root / "syncd.toml"
    config.write_text(content)
    config.chmod(0o644)
    result = run(world, "plan", "--config", str(config))
    assert result.exit_code == 1
    assert result.stderr == (
        f"syncd: config file {config} holds {refused} but group or others may read it "
        f"(mode 0644): {fix}, or chmod 600 the file if only you read it\n"
    )
    assert world.gets() == 0


@pytest.mark.parametrize(
    ("proxy", "mode"),
    [
        pytest.param("http://alice:TOMLPROXYPASS9@127.0.0.1:3199", 0o600, id="password-0600"),
        pytest.param("http://alice@127.0.0.1:3199", 0o644, id="user-alone-0644"),
    ],
)
def test_a_proxy_url_is_no_secret_when_only_the_owner_reads_it_or_it_holds_none(
    world: World, proxy: str, mode: int
):
    world.desire(ONLY_JANE)
    config = world.root / "syncd.toml"
    config.write_text(f'https_proxy = "{proxy}"\n')
    config.chmod(mode)
    result = run(world, "plan", "--config", str(config))  # loopback: the proxy goes unused
    assert result.exit_code == 0, result.output
    assert "Plan: 1 change for 1 user" in result.stdout


@pytest.mark.parametrize(
    ("variable", "what"),
    [
        pytest.param("SYNCD_UI_TOKEN_FILE", "UI token file", id="ui-token"),
        pytest.param("SYNCD_WEBHOOK_SECRET_FILE", "webhook secret file", id="webhook-secret"),
    ],
)
def test_a_listener_secret_others_can_read_is_refused_in_its_own_words(
    world: World, variable: str, what: str
):
    # It read "credential … refused: …; nothing was sent with it": words for an API
    # credential, while this one guards what others send to syncd.
    secret = world.root / "listener.secret"
    secret.write_text("s3cret-listener\n")
    secret.chmod(0o644)
    env = {"SYNCD_METRICS_ADDR": "127.0.0.1:0", variable: str(secret)}
    result = run(world, "run", "--once", **env)
    assert result.exit_code == 1
    assert result.stderr == (
        f"syncd: {what} {secret} refused: group or others may read it (mode 0644); chmod 600 it\n"
    )
