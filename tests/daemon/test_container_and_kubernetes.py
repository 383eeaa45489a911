"""deploy/container/ and deploy/kubernetes/: they parse, and name only what exists.

No container engine or cluster runs here, so the checks are on the text: the
Containerfile copies files of this checkout and sets real settings; the
manifests are valid YAML of the kinds they claim, every SYNCD_ variable is a
setting, every file a setting names lies in a volume the container mounts,
the probes and the ServiceMonitor reach the port syncd listens on.
"""

from __future__ import annotations

import re
import shlex
import subprocess
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from ruamel.yaml import YAML

from syncd.errors import CredentialError
from syncd.secretfiles import check_credentials_directory, read_secret_file
from syncd.settings import Settings, load_settings

ROOT = Path(__file__).resolve().parents[2]
CONTAINERFILE = ROOT / "deploy" / "container" / "Containerfile"
KUBERNETES = ROOT / "deploy" / "kubernetes"
SETTINGS = {f"SYNCD_{name.upper()}" for name in Settings.model_fields}
#: Settings whose value is a file or directory inside the container.
PATH_SETTINGS = ("SYNCD_STATE_PASSWORD_FILE", "SYNCD_CREDENTIALS_DIR", "SYNCD_STATE_DIR")


def instructions() -> list[tuple[str, str]]:
    """The Containerfile's instructions, continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n", " ", CONTAINERFILE.read_text())
    found = []
    for line in text.splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            keyword, _, rest = line.strip().partition(" ")
            found.append((keyword.upper(), rest.strip()))
    return found


def documents() -> dict[str, list[dict[str, Any]]]:
    """Every manifest, by file name."""
    return {
        path.name: [doc for doc in YAML(typ="safe").load_all(path.read_text()) if doc]
        for path in sorted(KUBERNETES.glob("*.yaml"))
    }


def of_kind(kind: str) -> dict[str, Any]:
    (found,) = [d for docs in documents().values() for d in docs if d["kind"] == kind]
    return found


def test_the_containerfile_copies_what_exists_and_runs_as_a_user():
    steps = instructions()
    assert [k for k, _ in steps].count("FROM") == 2  # built apart, nothing of the build kept
    for keyword, rest in steps:
        if keyword == "COPY" and not rest.startswith("--from"):
            *sources, _ = shlex.split(rest)
            for source in sources:
                assert (ROOT / source).exists(), source
    (user,) = [rest for keyword, rest in steps if keyword == "USER"]
    uid = user.split(":")[0]
    assert uid.isdigit()
    assert int(uid) != 0
    assert uid == str(
        of_kind("Deployment")["spec"]["template"]["spec"]["securityContext"]["runAsUser"]
    )
    env = " ".join(rest for keyword, rest in steps if keyword == "ENV")
    named = set(re.findall(r"\b(SYNCD_[A-Z_]+)=", env))
    assert named
    assert named <= SETTINGS, named - SETTINGS
    assert ("ENTRYPOINT", '["syncd"]') in steps
    assert ("CMD", '["run"]') in steps
    assert "'.[postgres]'" in " ".join(rest for keyword, rest in steps if keyword == "RUN")


def test_the_manifests_parse_and_list_their_resources():
    found = documents()
    kustomization = found.pop("kustomization.yaml")[0]
    assert set(kustomization["resources"]) <= set(found)
    kinds = sorted(d["kind"] for docs in found.values() for d in docs)
    assert kinds == ["ConfigMap", "Deployment", "Secret", "Secret", "Service", "ServiceMonitor"]


def container(name: str = "syncd") -> dict[str, Any]:
    spec = of_kind("Deployment")["spec"]["template"]["spec"]
    (found,) = [c for c in spec["containers"] + spec["initContainers"] if c["name"] == name]
    return found


def test_two_replicas_on_postgresql_with_settings_that_exist():
    deployment = of_kind("Deployment")
    assert deployment["spec"]["replicas"] == 2
    env = {item["name"]: item["value"] for item in container()["env"]}
    assert set(env) <= SETTINGS, set(env) - SETTINGS
    settings = load_settings(**{name.removeprefix("SYNCD_").lower(): v for name, v in env.items()})
    assert settings.on_postgresql
    assert settings.metrics_addr == "0.0.0.0:9100"


def test_every_file_a_setting_names_is_in_a_mounted_volume():
    spec = of_kind("Deployment")["spec"]["template"]["spec"]
    volumes = {volume["name"]: volume for volume in spec["volumes"]}
    main = container()
    mounts = {PurePosixPath(m["mountPath"]): m["name"] for m in main["volumeMounts"]}
    env = {item["name"]: item["value"] for item in main["env"]}
    for name in PATH_SETTINGS:
        path = PurePosixPath(env[name])
        assert any(path == mount or mount in path.parents for mount in mounts), name
    # The copies the init container makes are where the settings say, from the Secrets.
    init = container("credentials")
    init_mounts = {m["mountPath"]: m["name"] for m in init["volumeMounts"]}
    script = init["command"][-1]
    password = env["SYNCD_STATE_PASSWORD_FILE"]
    assert password in script
    assert f"{env['SYNCD_CREDENTIALS_DIR']}/" in script
    secret_dirs = [path for path, volume in init_mounts.items() if "secret" in volumes[volume]]
    names = {volumes[init_mounts[p]]["secret"]["secretName"] for p in secret_dirs}
    secrets = {d["metadata"]["name"]: d for d in documents()["secret.example.yaml"]}
    assert names == set(secrets)
    assert "password" in secrets["syncd-postgres"]["stringData"]
    for path in secret_dirs:
        assert path in script, path


@pytest.mark.parametrize(
    ("probe", "path"), [("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")]
)
def test_the_probes_and_the_service_monitor_reach_the_metrics_port(probe: str, path: str):
    main = container()
    (port,) = main["ports"]
    assert port["containerPort"] == 9100
    assert main[probe]["httpGet"] == {"path": path, "port": port["name"]}
    assert main["securityContext"]["readOnlyRootFilesystem"] is True
    service, monitor = of_kind("Service"), of_kind("ServiceMonitor")
    labels = of_kind("Deployment")["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= labels.items()
    assert (
        monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    )
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint["port"] in {p["name"] for p in service["spec"]["ports"]}
    assert endpoint["path"] == "/metrics"


def test_the_images_are_a_placeholder_that_kustomize_sets():
    # `syncd:latest` was pulled as docker.io/library/syncd: someone else's image.
    spec = of_kind("Deployment")["spec"]["template"]["spec"]
    images = {c["image"] for c in spec["containers"] + spec["initContainers"]}
    assert images == {"syncd"}
    kustomization = documents()["kustomization.yaml"][0]
    (image,) = kustomization["images"]
    assert image["name"] == "syncd"
    # Unless an overlay sets it, a registry that cannot exist: never Docker Hub.
    registry = image["newName"].split("/")[0]
    assert registry.endswith(".invalid"), registry


@pytest.mark.parametrize("kit", ["as-shipped", "copied-into-the-emptyDir-itself"])
def test_the_init_containers_copies_pass_syncds_checks(tmp_path: Path, kit: str):
    # The emptyDir is root's, 2777 (fsGroup), mounted readOnly in syncd's container:
    # that passed while a read-only mount's write bits were ignored, though whoever
    # could write at a read-only bind's source swapped the files. Now such a
    # directory is refused, so the init container copies into a 0700 directory of
    # its own in it. Its script, run here on directories of those modes.
    init = container("credentials")
    script = init["command"][-1]
    env = {item["name"]: item["value"] for item in container()["env"]}
    if kit == "copied-into-the-emptyDir-itself":  # the kit before: refused now
        script = re.sub(r"install -d -m 0700 \S+ && ", "", script).replace("/private", "")
        env = {name: value.replace("/private", "") for name, value in env.items()}
    for mount in init["volumeMounts"]:
        volume = tmp_path / mount["mountPath"].lstrip("/")
        volume.mkdir(parents=True)
        volume.chmod(0o2777)
        script = script.replace(mount["mountPath"], str(volume))
    secrets = tmp_path / "secrets"
    for name, content in [("accounts/janedoe.token", "tok-jane\n"), ("postgres/password", "pw\n")]:
        (secrets / name).write_text(content)
        (secrets / name).chmod(0o440)  # a Secret's file with fsGroup: refused as it is
    subprocess.run(["sh", "-c", script], check=True)

    def where(name: str) -> Path:
        return tmp_path / env[name].lstrip("/")

    credentials = where("SYNCD_CREDENTIALS_DIR")
    if kit == "copied-into-the-emptyDir-itself":
        with pytest.raises(CredentialError, match="group or others may write it"):
            check_credentials_directory(credentials)
        return
    check_credentials_directory(credentials)
    assert read_secret_file(credentials / "janedoe.token", credentials) == "tok-jane"
    password = where("SYNCD_STATE_PASSWORD_FILE")
    assert password.parent.stat().st_mode & 0o777 == 0o700
    assert read_secret_file(password) == "pw"


def test_the_state_directory_is_made_by_syncd_inside_the_empty_dir():
    # The emptyDir itself is root's, 0777: refused (tests/security/test_state_directory.py
    # starts syncd in a directory of those modes).
    spec = of_kind("Deployment")["spec"]["template"]["spec"]
    volumes = {volume["name"]: volume for volume in spec["volumes"]}
    env = {item["name"]: item["value"] for item in container()["env"]}
    state_dir = PurePosixPath(env["SYNCD_STATE_DIR"])
    (mount,) = [m for m in container()["volumeMounts"] if m["mountPath"] == str(state_dir.parent)]
    assert "emptyDir" in volumes[mount["name"]]
    assert not mount.get("readOnly")


def test_verify_full_has_the_postgres_ca_mounted():
    # libpq has no default CA: verify-full without sslrootcert refused every connection.
    env = {item["name"]: item["value"] for item in container()["env"]}
    query = parse_qs(urlsplit(env["SYNCD_STATE_URL"]).query)
    assert query["sslmode"] == ["verify-full"]
    (root_cert,) = (PurePosixPath(path) for path in query["sslrootcert"])
    spec = of_kind("Deployment")["spec"]["template"]["spec"]
    volumes = {volume["name"]: volume for volume in spec["volumes"]}
    (mount,) = [
        m for m in container()["volumeMounts"] if PurePosixPath(m["mountPath"]) == root_cert.parent
    ]
    config_map = volumes[mount["name"]]["configMap"]
    (item,) = [i for i in config_map["items"] if i["path"] == root_cert.name]
    example = of_kind("ConfigMap")
    assert example["metadata"]["name"] == config_map["name"]
    assert "BEGIN CERTIFICATE" in example["data"][item["key"]]
