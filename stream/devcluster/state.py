"""What ``streaminfer dev up`` started, so that later commands can find and stop it.

``$STREAMINFER_HOME/dev.json`` records container and network ids; ``dev.env`` holds
the connection settings in ``STREAMINFER_*`` form, which every command reads.
"""

from __future__ import annotations

import contextlib
import json
import shlex
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import docker
from docker.errors import NotFound

from stream.devcluster.progress import say
from stream.exceptions import ConfigurationError
from stream.settings import dev_env_file, state_dir


def state_file() -> Path:
    """The JSON record of the running dev cluster."""
    return state_dir() / "dev.json"


@dataclass(frozen=True)
class DevState:
    """The dev cluster as recorded at start."""

    bootstrap_servers: str
    redis_url: str
    brokers: int
    containers: dict[str, str]  # name -> container id
    network: str
    kafka_image: str
    redis_image: str
    started_at: float
    redis_env: dict[str, str] | None = None  # Sentinel / Cluster settings when not standalone
    regions: dict[str, str] | None = None  # name -> bootstrap servers (dev up --regions 2)
    extra_networks: list[str] = field(default_factory=list)  # the other regions' networks
    region_redis: dict[str, str] | None = None  # name -> Redis URL (dev up --regions 2)
    secure_dir: str | None = None  # dev up --secure: CA, passwords (0700)
    certs_bootstrap: str | None = None  # secure: the certificate listener (mutual TLS)
    certs_regions: dict[str, str] | None = None  # secure, two regions: each one's CERTS
    profile: str = "dev"  # dev up --profile: "production" adds the workers' settings

    def secure_env(self, principal: str = "admin", certificate: bool = False
                   ) -> dict[str, str]:
        """The client settings of ``principal`` on a secure cluster (nothing if open);
        ``certificate``: Kafka through the certificate listener with its client
        certificate instead of SCRAM."""
        if self.secure_dir is None:
            return {}
        from stream.devcluster.secure import client_env

        env = client_env(Path(self.secure_dir), principal, certificate)
        if certificate:
            if self.certs_bootstrap is None:
                raise ConfigurationError(
                    "this dev cluster was started before certificate clients existed: "
                    "`streaminfer dev up --secure --replace`")
            env["STREAMINFER_BOOTSTRAP_SERVERS"] = self.certs_bootstrap
            if self.certs_regions:
                env["STREAMINFER_REGIONS"] = ";".join(
                    f"{n}={b}" for n, b in self.certs_regions.items())
        return env

    def env_as(self, principal: str, certificate: bool = False) -> dict[str, str]:
        """:meth:`env` acting as ``principal``: the admin's credentials are taken out
        before the principal's go in, so nothing of the admin's is left (with a client
        certificate, the admin's SASL user and password file were left over, and any
        SASL connection made from that environment acted as admin)."""
        env = self.env()
        for key in self.secure_env():
            env.pop(key, None)
        env.update(self.secure_env(principal, certificate))
        return env

    def env(self) -> dict[str, str]:
        """Settings every command should use against this cluster."""
        rf = min(3, self.brokers)
        env = {
            "STREAMINFER_BOOTSTRAP_SERVERS": self.bootstrap_servers,
            "STREAMINFER_REDIS_URL": self.redis_url,
            "STREAMINFER_REPLICATION_FACTOR": str(rf),
            "STREAMINFER_MIN_INSYNC_REPLICAS": str(min(2, rf)),
        }
        env.update(self.redis_env or {})
        env.update(self.secure_env())
        replay = replay_key_paths()
        if replay[0].exists() and replay[1].exists():
            env["STREAMINFER_REPLAY_TRUSTED_KEYS"] = str(replay[1])
            env["STREAMINFER_REPLAY_SIGNING_KEY"] = str(replay[0])
        if self.regions:
            env["STREAMINFER_REGIONS"] = ";".join(f"{n}={b}" for n, b in self.regions.items())
        if self.region_redis:
            env["STREAMINFER_REGION_REDIS"] = ";".join(
                f"{n}={u}" for n, u in self.region_redis.items())
        if self.profile == "production" and self.secure_dir is not None:
            env.update(production_env(Path(self.secure_dir)))
        return env


def production_env(secure_dir: Path) -> dict[str, str]:
    """What `dev up --profile production` adds for every command: workers run
    exactly-once, record the features they served and refuse sensitive features sent in
    clear; producers seal them with the profile's field key ring."""
    return {"STREAMINFER_GUARANTEE": "exactly-once",
            "STREAMINFER_RECORD_INPUTS": "true",
            "STREAMINFER_CANARY_JUDGE": "true",
            "STREAMINFER_FIELD_KEYS_FILE": str(field_keys_path(secure_dir)),
            "STREAMINFER_REQUIRE_SEALED": "true",
            "STREAMINFER_MODEL_PATH": str(sealed_model_path(secure_dir))}


# What the production profile's model declares sensitive: the shipped model declares
# nothing, and sealing "its sensitive features" would then seal none.
PRODUCTION_SENSITIVE = ("amount", "merchant_risk")


def sealed_model_path(secure_dir: Path) -> Path:
    """The production profile's model: the shipped one, declaring sensitive features."""
    return secure_dir / "model"


def ensure_sealed_model(secure_dir: Path) -> Path:
    """Copy the shipped model into the profile and declare ``PRODUCTION_SENSITIVE`` in its
    features.json (producers seal them, workers require them sealed); kept in step with
    the shipped model on every call."""
    import json
    import shutil

    from processors.model import DEFAULT_MODEL_DIR

    dest = sealed_model_path(secure_dir)
    shutil.rmtree(dest, ignore_errors=True)
    shutil.copytree(DEFAULT_MODEL_DIR, dest)
    spec = json.loads((dest / "features.json").read_text())
    spec["sensitive_features"] = list(PRODUCTION_SENSITIVE)
    (dest / "features.json").write_text(json.dumps(spec, indent=2) + "\n")
    return dest


def field_keys_path(secure_dir: Path) -> Path:
    """The production profile's field key ring."""
    return secure_dir / "field-keys.json"


def ensure_field_keys(secure_dir: Path) -> Path:
    """Make the production profile's key ring (one random 256-bit primary key, 0600)."""
    import os

    from processors.sealing.keyring import Keyring, write_keyring

    path = field_keys_path(secure_dir)
    if not path.exists():
        kid = time.strftime("dev-%Y%m%d", time.gmtime())
        write_keyring(path, Keyring({kid: os.urandom(32)}, kid, str(path)))
    return path


def replay_key_paths() -> tuple[Path, Path]:
    """The dev cluster's DLQ-operator key pair (private, public) for signed replays."""
    folder = state_dir() / "replay"
    return folder / "dlq-operator.key", folder / "dlq-operator.pub"


def ensure_replay_keys() -> None:
    """Make the dev cluster's replay key pair once (kept across `dev down`/`dev up`)."""
    from processors.registry.signing import generate

    private, public = replay_key_paths()
    if private.exists() and public.exists():
        return
    private.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    generate(private, public)


def save(state: DevState) -> None:
    """Record the cluster and write the env file."""
    state_dir().mkdir(parents=True, exist_ok=True)
    ensure_replay_keys()
    state_file().write_text(json.dumps(asdict(state), indent=2) + "\n")
    lines = [f"# written by `streaminfer dev up` at {time.ctime(state.started_at)}"]
    if state.brokers == 1:
        lines.append("# ONE broker: topics get replication factor 1 (no fault tolerance).")
    # Quoted: the file is also meant for `set -a; . dev.env` (regions lists hold ';').
    lines += [f"{k}={shlex.quote(v)}" for k, v in state.env().items()]
    dev_env_file().write_text("\n".join(lines) + "\n")


def load() -> DevState | None:
    """The recorded cluster, if any."""
    path = state_file()
    if not path.exists():
        return None
    return DevState(**json.loads(path.read_text()))


def container_status(state: DevState) -> dict[str, str]:
    """name -> Docker status ('running', 'exited', 'missing')."""
    client = docker.from_env()
    out: dict[str, str] = {}
    for name, cid in state.containers.items():
        try:
            out[name] = client.containers.get(cid).status
        except NotFound:
            out[name] = "missing"
    return out


def broker_pids(state: DevState) -> list[int]:
    """Host pids of the running Kafka nodes' main processes (their CPU is visible in
    /proc: the broker warm-up watches their JIT compiler threads)."""
    from stream.devcluster.warmup import host_pid

    client = docker.from_env()
    pids = []
    for name, cid in state.containers.items():
        if not name.startswith("kafka"):
            continue
        try:
            pid = host_pid(client.containers.get(cid))
        except NotFound:
            continue
        if pid is not None:
            pids.append(pid)
    return pids


def remove(state: DevState) -> None:
    """Remove the recorded containers and network by id, then forget them."""
    client = docker.from_env()
    for name, cid in state.containers.items():
        try:
            client.containers.get(cid).remove(force=True, v=True)
            say(f"removed {name} ({cid[:12]})")
        except NotFound:
            say(f"{name} ({cid[:12]}) was already gone")
    for network in [state.network, *state.extra_networks]:
        with contextlib.suppress(NotFound):
            client.networks.get(network).remove()
    state_file().unlink(missing_ok=True)
    dev_env_file().unlink(missing_ok=True)
    if state.secure_dir is not None:  # its CA and passwords serve no other cluster
        shutil.rmtree(state.secure_dir, ignore_errors=True)


def remove_leftovers(name_prefix: str, label: str) -> list[str]:
    """Remove containers of this dev cluster's names that no record holds: what a
    ``dev up`` killed mid-start left (its cleanup never ran), which would otherwise make
    the next start fail on a name conflict (HTTP 409). Only containers carrying the
    dev cluster's label and one of its names are touched. Returns their names."""
    client = docker.from_env()
    removed = []
    for container in client.containers.list(all=True, filters={"label": label}):
        if container.name.startswith(f"{name_prefix}-"):
            container.remove(force=True, v=True)
            removed.append(container.name)
            say(f"removed {container.name} ({container.id[:12]}), left by an interrupted "
                "`dev up`")
    return removed
