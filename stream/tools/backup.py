"""``streaminfer backup`` / ``restore``: what a namespace needs to resume elsewhere.

Included (one .tar.gz):
- ``topics.json``: every ``<ns>.*`` topic with its partition count, replication factor and
  the configurations set on it (not broker defaults);
- ``control.json``: the latest ModelControl record per model (the compacted topic's state);
- ``groups.json``: committed offsets of every consumer group on ``<ns>.*`` topics;
- ``registry/``: the model registry (immutable versions with their manifests).

Not included: topic data (requests, predictions, dead letters). Keeping data is the
cluster's replication and MirrorMaker 2's job; restore expects the data to be brought back
by them (or by re-producing it) with the same partitions and offsets before workers start,
and says which committed offsets point past the data present.

Point in time: offsets are read first, then configurations, control state and registry,
so a restore can only re-answer (never skip) what was in flight while the backup ran.
"""

from __future__ import annotations

import base64
import io
import json
import shutil
import stat
import tarfile
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer, ConsumerGroupTopicPartitions, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, ConfigResource, ConfigSource, NewTopic

from processors.registry.directory import MANIFEST, DirectoryRegistry
from stream.connect import kafka_config
from stream.connect.to_end import read_to_end
from stream.connect.topics import partition_watermarks, wait_for_leaders
from stream.exceptions import ConfigurationError, KafkaOperationError
from stream.lifecycle.control import control_topic
from stream.settings import Settings

FORMAT = 1
TIMEOUT = 30.0


def _admin(settings: Settings) -> AdminClient:
    return AdminClient(kafka_config.admin(settings))


def _ours(settings: Settings, topic: str) -> bool:
    return topic.startswith(f"{settings.namespace}.")


# --- reading the cluster ---------------------------------------------------------------------
def group_offsets(settings: Settings, admin: AdminClient) -> dict[str, dict[str, dict[str, int]]]:
    """group -> topic -> partition -> committed offset, for the namespace's topics."""
    try:
        listing = admin.list_consumer_groups(request_timeout=TIMEOUT).result(TIMEOUT)
    except KafkaException as exc:
        raise KafkaOperationError(f"listing consumer groups failed: {exc}; is Kafka reachable "
                                  f"at {settings.bootstrap_servers}?", retriable=True) from exc
    out: dict[str, dict[str, dict[str, int]]] = {}
    for g in sorted(listing.valid, key=lambda g: g.group_id):
        fut = admin.list_consumer_group_offsets([ConsumerGroupTopicPartitions(g.group_id)])
        parts = fut[g.group_id].result(TIMEOUT).topic_partitions or []
        for tp in parts:
            if tp.offset >= 0 and _ours(settings, tp.topic):
                out.setdefault(g.group_id, {}).setdefault(tp.topic, {})[str(tp.partition)] = \
                    tp.offset
    return out


def topic_layouts(settings: Settings, admin: AdminClient) -> list[dict[str, Any]]:
    """The namespace's topics: partitions, replication factor, configurations set on them."""
    topics = admin.list_topics(timeout=TIMEOUT).topics
    names = sorted(n for n, t in topics.items() if _ours(settings, n) and t.error is None)
    if not names:
        return []
    resources = [ConfigResource(ConfigResource.Type.TOPIC, n) for n in names]
    described = admin.describe_configs(resources, request_timeout=TIMEOUT)
    out = []
    for res, fut in sorted(described.items(), key=lambda kv: kv[0].name):
        entries = fut.result(TIMEOUT)
        configs = {k: e.value for k, e in sorted(entries.items())
                   if e.source == ConfigSource.DYNAMIC_TOPIC_CONFIG.value and e.value is not None}
        parts = topics[res.name].partitions
        rf = len(next(iter(parts.values())).replicas) if parts else 1
        out.append({"name": res.name, "partitions": len(parts), "replication_factor": rf,
                    "configs": configs})
    return out


def control_records(settings: Settings) -> list[dict[str, str]]:
    """The latest record per key on the control topic (tombstones remove a key)."""
    topic = control_topic(settings)
    consumer = Consumer({**kafka_config.common(settings), "group.id": "streaminfer-backup",
                         "enable.auto.commit": False, "isolation.level": "read_committed"})
    try:
        # To the end offsets as of now: control decisions are written in transactions, so
        # the last offset is a commit marker no read_committed reader receives.
        latest: dict[bytes, bytes | None] = {}
        for msg in read_to_end(consumer, [topic], stall_s=TIMEOUT):
            latest[msg.key() or b""] = msg.value()
        return [{"key": k.decode(), "value": base64.b64encode(v).decode()}
                for k, v in sorted(latest.items()) if v is not None]
    finally:
        consumer.close()


def write_backup(settings: Settings, out: Path) -> str:
    """Write the archive; returns a one-line summary."""
    admin = _admin(settings)
    groups = group_offsets(settings, admin)
    topics = topic_layouts(settings, admin)
    control = control_records(settings)
    registry = settings.registry_path
    versions = DirectoryRegistry(registry).list()
    counts = {"topics": len(topics), "control_records": len(control), "groups": len(groups),
              "model_versions": len(versions)}
    manifest: dict[str, Any] = {
        "format": FORMAT, "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "namespace": settings.namespace, "bootstrap_servers": settings.bootstrap_servers,
        "includes": ["topic layouts and configurations", "control topic state",
                     "consumer group offsets", "model registry"],
        "excludes": ["topic data (replication / MirrorMaker 2 keep it)"],
        "counts": counts}
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    with tarfile.open(tmp, "w:gz") as tar:
        for name, data in (("manifest.json", manifest), ("topics.json", topics),
                           ("control.json", control), ("groups.json", groups)):
            blob = json.dumps(data, indent=2).encode()
            info = tarfile.TarInfo(name)
            info.size, info.mtime = len(blob), int(time.time())
            tar.addfile(info, io.BytesIO(blob))
        if registry.exists():
            tar.add(registry, arcname="registry")
    tmp.replace(out)  # a backup appears whole or not at all
    return (f"{counts['topics']} topics, {counts['control_records']} control records, "
            f"{counts['groups']} groups, {counts['model_versions']} model versions")


# --- writing a cluster -----------------------------------------------------------------------
def _read_archive(archive: Path, into: Path) -> dict[str, Any]:
    with tarfile.open(archive, "r:gz") as tar:
        tar.extractall(into, filter="data")
    manifest_path = into / "manifest.json"
    if not manifest_path.exists():
        raise ConfigurationError(f"{archive} is not a streaminfer backup (no manifest.json)")
    manifest: dict[str, Any] = json.loads(manifest_path.read_text())
    if manifest.get("format") != FORMAT:
        raise ConfigurationError(f"{archive}: backup format {manifest.get('format')} is not "
                                 f"{FORMAT}; use the streaminfer version that wrote it")
    return manifest


def _restore_topics(settings: Settings, admin: AdminClient,
                    topics: list[dict[str, Any]]) -> Iterator[str]:
    brokers = len(admin.list_topics(timeout=TIMEOUT).brokers)
    existing = admin.list_topics(timeout=TIMEOUT).topics
    new: list[NewTopic] = []
    for t in topics:
        if t["name"] in existing:
            have = len(existing[t["name"]].partitions)
            if have != t["partitions"]:
                yield (f"topic {t['name']}: exists with {have} partitions, the backup has "
                       f"{t['partitions']}; keys will map to other partitions than before")
            else:
                yield f"topic {t['name']}: exists"
            continue
        rf = min(t["replication_factor"], brokers)
        configs = dict(t["configs"])
        if "min.insync.replicas" in configs:
            configs["min.insync.replicas"] = str(min(int(configs["min.insync.replicas"]), rf))
        if rf < t["replication_factor"]:
            yield (f"topic {t['name']}: replication factor {rf} (was {t['replication_factor']}; "
                   f"this cluster has {brokers} broker(s))")
        new.append(NewTopic(t["name"], num_partitions=t["partitions"], replication_factor=rf,
                            config=configs))
    if new:
        for name, fut in admin.create_topics(new, operation_timeout=TIMEOUT).items():
            try:
                fut.result(TIMEOUT)
            except KafkaException as exc:
                raise KafkaOperationError(f"creating topic {name} failed: {exc}") from exc
            yield f"topic {name}: created"
        wait_for_leaders(admin, [t.topic for t in new], TIMEOUT)


def _restore_control(settings: Settings, records: list[dict[str, str]]) -> Iterator[str]:
    if not records:
        return
    present = {r["key"]: r["value"] for r in control_records(settings)}
    producer = Producer(kafka_config.client_producer(settings))
    errors: list[str] = []
    written = 0
    for r in records:
        if present.get(r["key"]) == r["value"]:
            yield f"control {r['key']}: already current"
            continue
        producer.produce(control_topic(settings), base64.b64decode(r["value"]), r["key"].encode(),
                         on_delivery=lambda err, _m: errors.append(str(err)) if err else None)
        written += 1
    if producer.flush(TIMEOUT) or errors:
        raise KafkaOperationError(f"restoring control records failed: {errors or 'timeout'}")
    if written:
        yield f"control: {written} model state(s) restored"


def _restore_registry(settings: Settings, source: Path) -> Iterator[str]:
    if not source.exists():
        return
    target = settings.registry_path
    for manifest in sorted(source.glob(f"*/*/{MANIFEST}")):
        version_dir = manifest.parent
        name, version = version_dir.parent.name, version_dir.name
        dest = target / name / version
        if dest.exists():
            if (dest / MANIFEST).read_bytes() != manifest.read_bytes():
                raise ConfigurationError(f"registry {target} already has {name} v{version} with "
                                         "a different manifest; versions are immutable: restore "
                                         "into another --registry-dir")
            yield f"registry {name} v{version}: already present"
            continue
        dest.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{version}-", dir=dest.parent))
        shutil.copytree(version_dir, staging, dirs_exist_ok=True)
        for path in staging.rglob("*"):
            if path.is_file():
                path.chmod(stat.S_IRUSR | stat.S_IRGRP | stat.S_IROTH)
        staging.rename(dest)
        DirectoryRegistry(target).fetch(name, version)  # hashes match the manifest
        yield f"registry {name} v{version}: restored and verified"


def _restore_groups(settings: Settings, admin: AdminClient,
                    groups: dict[str, dict[str, dict[str, int]]], force: bool) -> Iterator[str]:
    current = group_offsets(settings, admin)
    probe = Consumer({**kafka_config.common(settings), "group.id": "streaminfer-restore"})
    try:
        for group, topics in sorted(groups.items()):
            if group in current and not force:
                yield (f"group {group}: already has offsets here; left alone (--force to "
                       "overwrite)")
                continue
            tps = [TopicPartition(t, int(p), o) for t, parts in sorted(topics.items())
                   for p, o in sorted(parts.items(), key=lambda kv: int(kv[0]))]
            fut = admin.alter_consumer_group_offsets([ConsumerGroupTopicPartitions(group, tps)])
            try:
                fut[group].result(TIMEOUT)
            except KafkaException as exc:
                raise KafkaOperationError(
                    f"setting offsets of group {group} failed: {exc}; stop its consumers "
                    "first (offsets of a group with members cannot be changed)") from exc
            ahead = []
            for tp in tps:
                high = partition_watermarks(probe, tp.topic, tp.partition, TIMEOUT)[1]
                if tp.offset > high:
                    ahead.append(f"{tp.topic}[{tp.partition}] {tp.offset} > end {high}")
            yield f"group {group}: offsets of {len(tps)} partitions restored"
            if ahead:
                yield (f"group {group}: committed offsets past the data present ("
                       + "; ".join(ahead[:4]) + (" ..." if len(ahead) > 4 else "")
                       + "): bring the topic data back before starting its consumers")
    finally:
        probe.close()


def restore_backup(settings: Settings, archive: Path, force: bool = False) -> Iterator[str]:
    """Restore topics, control state, registry, then group offsets; yields progress lines."""
    with tempfile.TemporaryDirectory(prefix="streaminfer-restore-") as tmp:
        root = Path(tmp)
        manifest = _read_archive(archive, root)
        if manifest["namespace"] != settings.namespace:
            raise ConfigurationError(
                f"{archive} is a backup of namespace {manifest['namespace']!r}, not "
                f"{settings.namespace!r}; set --namespace {manifest['namespace']}")
        yield f"restoring {archive} ({manifest['created_at']}, {manifest['counts']})"
        admin = _admin(settings)
        yield from _restore_topics(settings, admin, json.loads((root / "topics.json").read_text()))
        yield from _restore_control(settings, json.loads((root / "control.json").read_text()))
        yield from _restore_registry(settings, root / "registry")
        yield from _restore_groups(settings, admin,
                                   json.loads((root / "groups.json").read_text()), force)
        yield "restore complete: start the workers"
