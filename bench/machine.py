"""What a benchmark ran on, for its results file: the CPU, the memory, the software."""

from __future__ import annotations

import os
import platform
from importlib import metadata
from pathlib import Path
from typing import Any

PACKAGES = ("confluent-kafka", "onnxruntime", "fastavro", "numpy", "redis", "faust-streaming")


def cpu_model(cpuinfo: Path = Path("/proc/cpuinfo")) -> str:
    """The CPU's model name (``unknown`` where /proc/cpuinfo does not say)."""
    try:
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def memory_gb(meminfo: Path = Path("/proc/meminfo")) -> float | None:
    """Total memory in GB (None where /proc/meminfo is missing)."""
    try:
        for line in meminfo.read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 1024 / 1024, 1)
    except OSError:
        pass
    return None


def versions() -> dict[str, str]:
    """Versions of the libraries every system shares (and librdkafka's)."""
    out: dict[str, str] = {}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    try:
        import confluent_kafka

        out["librdkafka"] = confluent_kafka.libversion()[0]
    except ImportError:
        pass
    return out


def describe(kafka_image: str | None = None, redis_image: str | None = None) -> dict[str, Any]:
    """The machine and software of this run."""
    return {"cores": os.cpu_count(), "cpu_model": cpu_model(), "memory_gb": memory_gb(),
            "kernel": platform.release(), "python": platform.python_version(),
            "kafka_image": kafka_image, "redis_image": redis_image, "versions": versions()}
