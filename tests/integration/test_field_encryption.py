"""Field-level encryption on real Kafka and Redis: sealed requests are answered exactly
as the same requests in clear; the raw bytes of the requests topic and the dead letters
and a backup hold no sensitive value (read with no key); a key rotation while the worker
runs (add, use, retire; the worker re-reads its key file) loses no request; a wrong key,
a retired key and a sealed request at a worker with no keys become `decrypt` dead letters.
The mirrored copy is checked in test_chaos_regions.py (the module's two regions)."""

from __future__ import annotations

import json
import shutil
import struct
import tarfile
from pathlib import Path
from typing import Any

import pytest

from processors.model import DEFAULT_MODEL_DIR
from processors.sealing.keyring import FileKeySource, Keyring, StaticKeySource, write_keyring
from schemas.serde import Decoder
from stream.clients import RequestProducer, TopicReader, synthetic_requests
from stream.connect.field_keys import Sealer
from stream.retrain.label_client import opened
from stream.settings import Settings
from stream.tools.backup import write_backup
from tests.integration.helpers import (
    WorkerPool,
    log_events,
    start_collector,
    streaminfer,
    wait_for_workers,
    wait_until,
)

pytestmark = pytest.mark.integration
SENSITIVE = ("amount", "merchant_risk")


def sensitive_model(tmp_path: Path) -> Path:
    """The reference model with two request features declared sensitive."""
    model = tmp_path / "model"
    shutil.copytree(DEFAULT_MODEL_DIR, model)
    spec = json.loads((model / "features.json").read_text())
    spec["sensitive_features"] = list(SENSITIVE)
    (model / "features.json").write_text(json.dumps(spec))
    return model


def plaintexts(requests: list[dict[str, Any]]) -> list[bytes]:
    """Each sensitive value as Avro writes a double (8 bytes, little-endian)."""
    return [struct.pack("<d", r["features"][name]) for r in requests for name in SENSITIVE]


def leaks(blob: bytes, secrets: list[bytes]) -> int:
    return sum(1 for s in secrets if s in blob)


def test_sealed_features_stay_ciphertext_outside_the_worker_and_rotation_loses_nothing(
        settings: Settings, workers: WorkerPool, tmp_path: Path) -> None:
    model = sensitive_model(tmp_path)
    keys = tmp_path / "field-keys.json"
    k1 = Keyring({"k1": b"1" * 32}, "k1", str(keys))
    write_keyring(keys, k1)
    s = settings.model_copy(update={"model_path": model, "field_keys_file": keys})
    collector = start_collector(s)
    worker = workers.start(s, "enc0")
    wait_for_workers(s, workers, 1)

    reqs = [dict(r, entity_id=f"enc-{i % 7}") for i, r in
            enumerate(synthetic_requests(120, seed=21))]
    clear = [dict(r, request_id=f"clear-{r['request_id']}") for r in reqs[:40]]
    with RequestProducer(s, sealer=False) as plain:
        for r in clear:
            plain.send(r)
    with RequestProducer(s) as producer:  # seals with k1: the model declares the fields
        for r in reqs[:40]:
            producer.send(r)
    assert producer.sealing_summary() == "; sealed sensitive features of 40 with key k1"

    # Rotation, the documented way: add k2 everywhere, then make it primary. The worker
    # re-reads its key file at its next batch; producers within a second.
    write_keyring(keys, Keyring({**k1.keys, "k2": b"2" * 32}, "k1", str(keys)))
    write_keyring(keys, Keyring({"k1": b"1" * 32, "k2": b"2" * 32}, "k2", str(keys)))
    with RequestProducer(s) as rotated:
        for r in reqs[40:80]:
            rotated.send(r)
    assert rotated.sealing_summary().endswith("40 with key k2")
    first = {r["request_id"] for r in reqs[:80]} | {r["request_id"] for r in clear}
    wait_until(lambda: collector.tally(first, set()).answered() >= len(first), 60,
               "every request sealed with k1 or k2 and every clear one answered")

    write_keyring(keys, Keyring({"k2": b"2" * 32}, "k2", str(keys)))  # retire k1
    with RequestProducer(s) as after:
        for r in reqs[80:118]:
            after.send(r)
    later = {r["request_id"] for r in reqs[80:118]}
    wait_until(lambda: collector.tally(later, set()).answered() >= len(later), 60,
               "the requests sealed with k2 after k1 was retired answered")
    fields = {"*": frozenset(SENSITIVE)}
    stale = Sealer(StaticKeySource(k1), fields)  # a producer still on the retired key
    forged = Sealer(StaticKeySource(Keyring({"k2": b"x" * 32}, "k2")), fields)
    with RequestProducer(s, sealer=stale) as p_stale:
        p_stale.send(dict(reqs[118], request_id="sealed-with-retired-k1"))
    with RequestProducer(s, sealer=forged) as p_forged:
        p_forged.send(dict(reqs[119], request_id="sealed-with-other-k2-bytes"))

    sealed_ids = {r["request_id"] for r in reqs[:118]}
    bad = {"sealed-with-retired-k1", "sealed-with-other-k2-bytes"}
    everything = sealed_ids | bad | {r["request_id"] for r in clear}

    def settled() -> bool:
        return collector.tally(everything, set()).answered() >= len(everything)

    wait_until(settled, 60, "every request answered or dead-lettered")
    preds = {v["request_id"]: v for v in collector.values(s.predictions_topic)}
    letters = {v["request_id"]: v for v in collector.values(s.dlq_topic)}
    assert sealed_ids <= set(preds), sorted(sealed_ids - set(preds))[:5]
    assert not any(preds[i]["fallback"] for i in sealed_ids)  # the model saw every feature
    for r in clear:  # the same request in clear and sealed: the same score
        assert preds[r["request_id"]]["score"] == preds[r["request_id"][6:]]["score"]
    assert set(letters) == bad, letters
    assert {v["stage"] for v in letters.values()} == {"decrypt"}
    assert "key 'k1', which is not in this worker's field keys" in \
        letters["sealed-with-retired-k1"]["error_message"]
    assert "do not open with key 'k2'" in letters["sealed-with-other-k2-bytes"]["error_message"]

    # Outside the worker: raw bytes hold no sensitive value; a reader with no key sees none.
    secrets = plaintexts(reqs[:118])
    raw = [rec for rec in TopicReader(s, s.requests_topic, timeout=5, until_end=True)
           if not str((rec.value or {}).get("request_id", "")).startswith("clear-")]
    assert len(raw) == 120
    assert sum(leaks(rec.raw or b"", secrets) for rec in raw) == 0
    decode = Decoder("InferenceRequest")
    for rec in raw:
        keyless = decode(rec.raw or b"")
        assert keyless["sealed"] is not None
        assert not set(SENSITIVE) & set(keyless["features"])
    dlq_raw = b"".join(rec.raw or b"" for rec in
                       TopicReader(s, s.dlq_topic, timeout=5, until_end=True))
    assert leaks(dlq_raw, plaintexts(reqs[118:])) == 0
    archive = tmp_path / "backup.tar.gz"
    write_backup(s, archive)
    with tarfile.open(archive) as tar:
        backup = b"".join(f.read() for m in tar.getmembers()
                          if m.isfile() and (f := tar.extractfile(m)) is not None)
    assert leaks(backup, secrets) == 0
    assert leaks(worker.log().encode(), secrets) == 0
    reloads = [m for m in log_events(worker.log_path, "msg") if "field keys reloaded" in m]
    assert reloads, "the worker never logged re-reading its key file"
    assert "['k2'], primary k2" in reloads[-1]


def test_a_worker_without_field_keys_dead_letters_sealed_requests(
        settings: Settings, workers: WorkerPool, tmp_path: Path) -> None:
    """The usual misconfiguration: producers (`streaminfer produce` and the Python client)
    seal, a worker was started without keys. Nothing is answered wrongly or lost: the
    sealed requests wait in the DLQ for a replay."""
    s = settings.model_copy(update={"model_path": sensitive_model(tmp_path)})
    collector = start_collector(s)
    workers.start(s, "nokeys")
    wait_for_workers(s, workers, 1)
    keys = tmp_path / "field-keys.json"
    write_keyring(keys, Keyring({"k1": b"1" * 32}, "k1"))

    def dead_letters() -> list[dict[str, Any]]:
        return collector.values(s.dlq_topic)

    # The command line seals what the model's features.json declares sensitive.
    done = streaminfer(s, "produce", "--count", "5", "--seed", "4", "--field-keys-file",
                       str(keys), "--model-path", str(s.model_path))
    assert done.returncode == 0, done.stderr[-2000:]
    assert "sealed sensitive features of 5 with key k1" in done.stderr
    wait_until(lambda: len(dead_letters()) >= 5, 60, "the five sealed requests dead-lettered")
    sealer = Sealer(StaticKeySource(Keyring({"k1": b"1" * 32}, "k1")),
                    {"*": frozenset(SENSITIVE)})
    reqs = list(synthetic_requests(5, seed=5))
    with RequestProducer(s, sealer=sealer) as producer:
        for r in reqs:
            producer.send(r)
    ids = {r["request_id"] for r in reqs}
    wait_until(lambda: collector.tally(ids, set()).answered() >= len(ids), 60,
               "five more sealed requests dead-lettered")
    letters = dead_letters()
    assert len(letters) == 10
    assert {v["stage"] for v in letters} == {"decrypt"}
    assert "this worker has no field keys" in letters[0]["error_message"]



def test_features_sealed_by_the_producer_never_reach_the_inputs_topic_in_clear(
        settings: Settings, workers: WorkerPool, tmp_path: Path) -> None:
    """Issue 34, item 8: the model declares nothing sensitive, the producer seals `amount`
    (--seal-fields). The worker opens it to score, and its input snapshots (read raw from
    <ns>.inputs, as an admin or MirrorMaker would) hold neither the values nor the name
    in clear; sealed in each snapshot, they open with the workers' key ring."""
    keys = tmp_path / "field-keys.json"
    write_keyring(keys, Keyring({"k1": b"1" * 32}, "k1", str(keys)))
    s = settings.model_copy(update={"field_keys_file": keys, "record_inputs": True})
    collector = start_collector(s)
    workers.start(s, "inputs0")
    wait_for_workers(s, workers, 1)
    reqs = list(synthetic_requests(60, seed=23))
    with RequestProducer(s.model_copy(update={"seal_fields": "amount"})) as producer:
        for r in reqs:
            producer.send(r)
    assert producer.sealing_summary().endswith("60 with key k1")
    ids = {r["request_id"] for r in reqs}
    wait_until(lambda: collector.tally(ids, set()).answered() >= len(ids), 60,
               "every sealed request answered")
    amounts = [struct.pack("<d", r["features"]["amount"]) for r in reqs]

    def snapshots() -> list[Any]:
        return [rec for rec in TopicReader(s, s.inputs_topic, timeout=10, until_end=True)
                if (rec.value or {}).get("request_id") in ids]

    wait_until(lambda: len(snapshots()) >= len(ids), 60, "a snapshot of every request")
    raw = snapshots()
    assert sum(leaks(rec.raw or b"", amounts) for rec in raw) == 0
    assert not any("amount" in (rec.value or {})["features"] for rec in raw)
    assert all("merchant_risk" in (rec.value or {})["features"] for rec in raw)  # the rest stays
    # ... and `amount` travels sealed, for a retraining job holding the key ring to open
    opened_amounts = {opened(dict(rec.value or {}), FileKeySource(keys))["features"]["amount"]
                      for rec in raw}
    assert opened_amounts == {r["features"]["amount"] for r in reqs}
