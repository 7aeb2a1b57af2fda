"""The secure compose files (docker-compose.secure.yml, docker-compose.regions.secure.yml)
against the open ones and the code that makes the secure dev cluster: the same Kafka
settings made secure the same way, MirrorMaker's properties plus its principal, every
secret a service reads in the folder `dev secrets` makes for it, each volume owned by the
user its service runs as."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

from stream.access.declaration import load
from stream.devcluster.compose_secrets import COMPLETE, SERVICE_UIDS, ComposeSecrets, make
from stream.devcluster.regions import mm2_secure_lines
from stream.devcluster.secure import REDIS_TLS_FLAGS, kafka_secure_env

COMPOSE = Path(__file__).resolve().parents[2] / "compose"
SECRET_MOUNT = re.compile(r"^(?P<volume>[a-z-]+-secrets):(?P<target>[^:]+)(:ro)?$")
# secure file -> the open file it makes secure, and each Kafka service's CERTS port
PAIRS = {
    "docker-compose.secure.yml": ("docker-compose.yml", {"kafka": "KAFKA_CERTS_PORT:-9094"}),
    "docker-compose.regions.secure.yml": (
        "docker-compose.regions.yml", {"east-kafka-1": "EAST_KAFKA_CERTS_PORT:-9094",
                                       "west-kafka-1": "WEST_KAFKA_CERTS_PORT:-9194"}),
}


def _compose(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((COMPOSE / name).read_text())
    return loaded


def _unescape(value: Any) -> str:
    return str(value).replace("$$", "$")  # compose's escape for a literal $


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory) -> ComposeSecrets:
    return make(tmp_path_factory.mktemp("compose") / "s", "streaminfer")


@pytest.mark.parametrize("secure_file", list(PAIRS))
def test_kafka_is_the_open_files_kafka_made_secure_as_dev_up_does(secure_file: str) -> None:
    open_file, certs = PAIRS[secure_file]
    opened, secure = _compose(open_file)["services"], _compose(secure_file)["services"]
    for service, port in certs.items():
        open_env = {k: str(v) for k, v in opened[service]["environment"].items()}
        expected = kafka_secure_env(open_env, load(), f"127.0.0.1:${{{port}}}")
        got = {k: _unescape(v) for k, v in secure[service]["environment"].items()}
        assert got == expected, service


@pytest.mark.parametrize("secure_file", list(PAIRS))
def test_redis_is_tls_only_with_the_acl_file(secure_file: str) -> None:
    redis = [s for n, s in _compose(secure_file)["services"].items() if n.endswith("redis")]
    assert redis
    for service in redis:
        command = " ".join(service["command"])
        assert "--port 0 --tls-port 6379" in command
        assert REDIS_TLS_FLAGS in command


def _properties(text: str) -> dict[str, str]:
    pairs = (line.split("=", 1) for line in text.splitlines()
             if line.strip() and not line.startswith("#"))
    return {k.strip(): v.strip() for k, v in pairs}


def test_mirrormaker_secure_is_the_open_properties_plus_its_principal() -> None:
    opened = _properties((COMPOSE / "mirrormaker" / "mm2.properties").read_text())
    secure = _properties((COMPOSE / "mirrormaker" / "mm2.secure.properties").read_text())
    assert secure == {**opened, **_properties("\n".join(mm2_secure_lines(["east", "west"])))}
    assert "password=\"@MM2_PASSWORD@\"" in secure["east.sasl.jaas.config"]


def _secret_files(service: dict[str, Any]) -> tuple[str, str, set[str]]:
    """The service's secrets volume, where it is mounted, and the files its settings
    name under that mount."""
    mounts = [m for m in service.get("volumes", []) if isinstance(m, str)
              and SECRET_MOUNT.match(m)]
    assert len(mounts) == 1, mounts
    match = SECRET_MOUNT.match(mounts[0])
    assert match is not None
    volume, target = match["volume"], match["target"]
    named = {str(v) for v in (service.get("environment") or {}).values()}
    files = {Path(v).name for v in named if v.startswith(target + "/")}
    return volume, target, files


def _folder(service: str) -> str:
    """The folder of `dev secrets` a service's volume is filled from (distribute.sh)."""
    base = service.removeprefix("east-").removeprefix("west-")
    return {"kafka-1": "kafka", "acls": "topics"}.get(base, base)


@pytest.mark.parametrize("secure_file", list(PAIRS))
def test_every_secret_a_service_reads_is_made_for_it_and_owned_by_its_user(
        secure_file: str, made: ComposeSecrets) -> None:
    secure = _compose(secure_file)
    distribute = (COMPOSE / "secure" / "distribute.sh").read_text()
    into = {m.split(":")[0]: m.split(":")[1].removeprefix("/out/")
            for m in secure["services"]["secrets"]["volumes"] if isinstance(m, str)
            and m.split(":")[1].startswith("/out/")}
    assert set(secure["volumes"]) == set(into)  # every declared volume is filled
    prometheus_cfg = yaml.safe_load((COMPOSE / "prometheus" / "prometheus.secure.yml").read_text())
    for name, service in secure["services"].items():
        if name == "secrets":
            continue
        volume, target, files = _secret_files(service)
        folder = _folder(name)
        filled = into[volume].removeprefix("east-").removeprefix("west-")
        assert filled == folder, f"{name} mounts {volume}, filled from {filled}/"
        if folder == "prometheus":
            job = prometheus_cfg["scrape_configs"][0]
            files = {Path(p).name for p in [*job["tls_config"].values(),
                                             job["authorization"]["credentials_file"]]}
            assert all(str(p).startswith(target) for p in job["tls_config"].values())
        if folder == "kafka":
            files |= {"node.pem", "ca.pem", "scram-users"}  # the entrypoint's names
        if folder == "mirrormaker":
            files |= {"ca.pem", "mm2-secrets.properties"}  # mm2.secure.properties, entrypoint
        if folder == "redis":
            files |= set(re.findall(r"/run/streaminfer/([\w.]+)",
                                    " ".join(service["command"])))
        assert files, f"{name} reads no secret file from {target}"
        for file in files:
            assert (made.service(folder) / file).is_file(), f"{name} reads {file}, not made"
        uid = SERVICE_UIDS[folder]
        user = str(service.get("user", "10001:10001"))  # the images' own user
        assert user.split(":")[0] == str(uid), f"{name} runs as {user}, its files are {uid}'s"
        if uid != 10001:
            assert f"{folder}) echo {uid}" in distribute


def test_grafana_takes_its_admin_password_from_the_secret(made: ComposeSecrets) -> None:
    env = _compose("docker-compose.secure.yml")["services"]["grafana"]["environment"]
    assert "GF_SECURITY_ADMIN_PASSWORD" not in env
    assert env["GF_SECURITY_ADMIN_PASSWORD__FILE"] == "/run/streaminfer/admin.password"
    password = (made.service("grafana") / "admin.password").read_text().strip()
    assert len(password) >= 20
    assert password != "admin"


def test_dev_secrets_keeps_a_complete_set_and_renews_on_request(tmp_path: Path) -> None:
    from stream.cli.main import cli

    folder = tmp_path / "s"
    runner = CliRunner()
    first = runner.invoke(cli, ["dev", "secrets", str(folder), "--env", "--as", "producer"])
    assert first.exit_code == 0, first.output
    assert f"export STREAMINFER_COMPOSE_SECRETS={folder}" in first.output
    assert "STREAMINFER_SASL_USERNAME=producer" in first.output
    assert (folder / COMPLETE).exists()
    assert oct(folder.stat().st_mode & 0o777) == "0o700"
    assert all(oct(p.stat().st_mode & 0o777) == "0o600"
               for p in folder.rglob("*") if p.is_file())
    ca = (folder / "host" / "ca.pem").read_bytes()
    again = runner.invoke(cli, ["dev", "secrets", str(folder)])
    assert again.exit_code == 0
    assert "kept" in again.output
    assert (folder / "host" / "ca.pem").read_bytes() == ca
    renewed = runner.invoke(cli, ["dev", "secrets", str(folder), "--renew"])
    assert renewed.exit_code == 0
    assert "made" in renewed.output
    assert (folder / "host" / "ca.pem").read_bytes() != ca
    cert = runner.invoke(cli, ["dev", "secrets", str(folder), "--env", "--as", "producer",
                               "--client-cert"])
    assert "STREAMINFER_SECURITY_PROTOCOL=SSL" in cert.output
    assert "STREAMINFER_BOOTSTRAP_SERVERS=127.0.0.1:9094" in cert.output
    assert "PASSWORD_FILE=" in cert.output  # Redis still takes the password
    assert "SASL" not in cert.output
    unknown = runner.invoke(cli, ["dev", "secrets", str(folder), "--as", "mallory"])
    assert unknown.exit_code == 2
    assert "no principal 'mallory'" in unknown.output


def test_dev_env_as_a_principal_carries_nothing_of_the_admins(tmp_path: Path) -> None:
    """Issue 34, item 14: `dev env --as P --client-cert` exported the admin's SASL user and
    password file for every P."""
    from stream.devcluster.state import DevState

    dev = DevState("127.0.0.1:9092", "rediss://127.0.0.1:6379/0", 1, {}, "net", "k", "r", 0.0,
                   secure_dir=str(tmp_path / "secure"), certs_bootstrap="127.0.0.1:9094")
    for principal in ("worker", "consumer", "dlq-operator"):
        for certificate in (False, True):
            env = dev.env_as(principal, certificate)
            leaked = {k: v for k, v in env.items() if "admin" in v}
            assert leaked == {}, (principal, certificate, leaked)
            assert env["STREAMINFER_REDIS_USERNAME"] == principal
            if certificate:
                assert "STREAMINFER_SASL_USERNAME" not in env
                assert env["STREAMINFER_SECURITY_PROTOCOL"] == "SSL"
                assert env["STREAMINFER_BOOTSTRAP_SERVERS"] == "127.0.0.1:9094"
            else:
                assert env["STREAMINFER_SASL_USERNAME"] == principal
