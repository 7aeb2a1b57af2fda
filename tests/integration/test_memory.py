"""A long stream through `streaminfer produce --regions` keeps the producer's memory flat."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from stream.chaos.faults_workers import rss_mb
from stream.settings import Settings
from tests.integration.helpers import settings_env

pytestmark = pytest.mark.integration


# The test command runs a short stream; the 200,000-request soak runs with --extended.
@pytest.mark.parametrize("count", [60_000, pytest.param(200_000, marks=pytest.mark.extended)])
def test_produce_regions_memory_stays_flat_over_a_long_stream(settings: Settings,
                                                              count: int) -> None:
    env = settings_env(settings, regions=f"east={settings.bootstrap_servers}")
    proc = subprocess.Popen([sys.executable, "-m", "stream.cli.main", "produce", "--count",
                             str(count), "--entities", "1000", "--seed", "7"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    samples: list[tuple[float, float]] = []
    deadline = time.monotonic() + 300
    while proc.poll() is None and time.monotonic() < deadline:
        rss = rss_mb(proc.pid)
        if rss is not None:
            samples.append((time.monotonic(), rss))
        time.sleep(0.1)
    if proc.poll() is None:
        proc.kill()
    _out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err[-2000:]
    assert f"sent {count} requests" in err, err[-500:]
    assert f"acknowledged by east {count}" in err, err[-500:]
    assert "held in memory at the end 0" in err  # nothing kept per acknowledged request
    # Memory while the stream runs: the second half must not grow past the first.
    start, end = samples[0][0], samples[-1][0]
    span = end - start
    first = max(r for t, r in samples if start + 0.25 * span <= t <= start + 0.5 * span)
    second = max(r for t, r in samples if t > start + 0.5 * span)
    print(f"\nproduce --regions, {count} requests in {span:.1f} s: RSS {first:.0f} MB at "
          f"25-50% of the run, {second:.0f} MB at the peak after")
    assert second - first < 15, f"RSS grew from {first:.0f} to {second:.0f} MB"
