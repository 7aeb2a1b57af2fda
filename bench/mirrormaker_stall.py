"""Does MirrorMaker 2 resume replicating after a region's outage, or stall for good?

For each connect-mirror release (and optional extra MM2 properties) this starts two
one-broker regions and MirrorMaker with its watchdog off, then ``--rounds`` times takes
east's broker away (``pause``: docker pause; ``stop``: docker stop/start) for ``--hold``
seconds, brings it back, and waits up to ``--resume-within`` seconds for heartbeats newer
than the heal to arrive in both directions. A round that waits in vain is a stall. Prints
a table (release, round, fault, east->west and west->east resume time, stall, the
"failed to properly shut down" lines MirrorMaker logged) and writes JSON.

    .venv/bin/python -m bench.mirrormaker_stall --versions 3.9.1,4.3.1 --rounds 3

Images are built once per release (``streaminfer/mirrormaker:<release>``, Maven jars
cached). Each release's clusters are removed when its rounds end.
"""

from __future__ import annotations

import argparse
import json
import time
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path

from stream.devcluster.engine import ensure_engine
from stream.devcluster.images import ensure_images, ensure_mirrormaker_image
from stream.devcluster.progress import say
from stream.devcluster.regions import RunningRegions, start_regions
from stream.regions.replication_status import newest_heartbeat
from stream.settings import Settings

UNRESPONSIVE = "failed to properly shut down"


@dataclass
class Round:
    """One outage and what replication did after it."""

    release: str
    extra: str
    round: int
    fault: str
    east_to_west_s: float | None  # None: no heartbeat newer than the heal in time
    west_to_east_s: float | None
    unresponsive_lines: int
    new_topic_s: float | None = None  # a new topic this long before the outage

    @property
    def stalled(self) -> bool:
        """Either direction never resumed within the wait."""
        return self.east_to_west_s is None or self.west_to_east_s is None


def _resumed(regions: RunningRegions, healed_ms: int, within_s: float) -> dict[str, float | None]:
    """Seconds from the heal to the first heartbeat newer than it, per direction."""
    at = {name: Settings(bootstrap_servers=c.bootstrap_servers)
          for name, c in regions.clusters.items()}
    want = {"east->west": ("west", "east.heartbeats"), "west->east": ("east", "west.heartbeats")}
    got: dict[str, float | None] = dict.fromkeys(want)
    end = time.monotonic() + within_s
    while time.monotonic() < end and any(v is None for v in got.values()):
        for flow, (target, topic) in want.items():
            if got[flow] is None:
                try:
                    newest = newest_heartbeat(at[target], topic)
                except Exception:  # noqa: BLE001 - the target may still be coming back
                    newest = None
                if newest is not None and newest > healed_ms:
                    got[flow] = round(time.time() - healed_ms / 1000, 1)
        time.sleep(1.0)
    return got


def _outage(regions: RunningRegions, fault: str, hold_s: float) -> int:
    """Take east's broker away for ``hold_s`` and back; returns the heal time (ms)."""
    broker = next(iter(regions.clusters["east"].kafka.values())).get_wrapped_container()
    if fault == "pause":
        broker.pause()
        time.sleep(hold_s)  # the outage's length is the experiment's point
        broker.unpause()
    else:
        broker.stop(timeout=5)
        time.sleep(hold_s)
        broker.start()
    return int(time.time() * 1000)


def _new_topic(regions: RunningRegions, ns: str, settle_s: float) -> None:
    """Create a topic on east that MirrorMaker must start copying (as each chaos scenario
    does with its own namespace), and give its topic refresh (every 5 s) time to see it
    and reassign tasks: the outage then meets MirrorMaker reconfiguring."""
    from stream.connect.topics import ensure_topics

    east = regions.clusters["east"]
    ensure_topics(Settings(bootstrap_servers=east.bootstrap_servers,
                           namespace=f"{ns}-chaos-{uuid.uuid4().hex[:6]}", partitions=4,
                           replication_factor=1, min_insync_replicas=1))
    time.sleep(settle_s)  # the refresh interval is the experiment's variable, not a wait


def run_release(release: str, extra: str, rounds: int, faults: list[str], hold_s: float,
                within_s: float, new_topic_s: float | None = None) -> list[Round]:
    """All rounds against one release's MirrorMaker."""
    ensure_engine()
    images = ensure_images()
    image = ensure_mirrormaker_image(version=release)
    ns = f"mmstall-{uuid.uuid4().hex[:6]}"
    regions = start_regions(1, images.kafka, images.redis, image, ns,
                            wait_for_replication=True,
                            mirrormaker_env={"MM2_WATCHDOG_STALL_S": "0",
                                             "MM2_WATCHDOG_RETURN_S": "0"},
                            mirrormaker_extra=extra.replace(";", "\n"))
    out: list[Round] = []
    try:
        for i in range(rounds):
            fault = faults[i % len(faults)]
            say(f"{release} round {i + 1}/{rounds}: east's broker "
                f"{'stopped' if fault == 'stop' else 'paused'} for {hold_s:.0f}s")
            before = regions.mirrormaker.logs().decode(errors="replace").count(UNRESPONSIVE)
            if new_topic_s is not None:
                _new_topic(regions, ns, new_topic_s)
            healed = _outage(regions, fault, hold_s)
            got = _resumed(regions, healed, within_s)
            after = regions.mirrormaker.logs().decode(errors="replace").count(UNRESPONSIVE)
            r = Round(release, extra, i + 1, fault, got["east->west"], got["west->east"],
                      after - before, new_topic_s)
            say(f"  east->west {r.east_to_west_s}s, west->east {r.west_to_east_s}s"
                + (" STALLED" if r.stalled else "")
                + (f", {r.unresponsive_lines} 'failed to properly shut down'"
                   if r.unresponsive_lines else ""))
            out.append(r)
            if r.stalled:
                break  # replication is gone for good; later rounds would measure nothing
    finally:
        regions.stop()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--versions", default="4.3.1", help="connect-mirror releases, comma-separated")
    ap.add_argument("--extra", default="", help="MM2 properties to add, ';'-separated")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--faults", default="stop,pause", help="cycled per round: stop, pause")
    ap.add_argument("--hold", type=float, default=20.0, help="outage length, seconds")
    ap.add_argument("--resume-within", type=float, default=90.0,
                    help="seconds to wait for heartbeats after the heal before calling it a stall")
    ap.add_argument("--new-topic-s", type=float, default=None,
                    help="before each outage, create a topic MirrorMaker must copy and wait "
                         "this long (its topic refresh is 5 s): the outage meets a task "
                         "reassignment, as in a chaos run")
    ap.add_argument("--json", type=Path, default=Path("bench/results/mirrormaker_stall.json"))
    args = ap.parse_args()
    rows: list[Round] = []
    for release in args.versions.split(","):
        rows += run_release(release.strip(), args.extra, args.rounds, args.faults.split(","),
                            args.hold, args.resume_within, args.new_topic_s)
    print(f"\n{'release':<8} {'round':>5} {'fault':<6} {'east->west':>11} {'west->east':>11} "
          f"{'stalled':<8} unresponsive  new topic  extra")
    for r in rows:
        def fmt(v: float | None) -> str:
            return "never" if v is None else f"{v:.1f} s"
        print(f"{r.release:<8} {r.round:>5} {r.fault:<6} {fmt(r.east_to_west_s):>11} "
              f"{fmt(r.west_to_east_s):>11} {'yes' if r.stalled else 'no':<8} "
              f"{r.unresponsive_lines:>12}  "
              f"{'-' if r.new_topic_s is None else f'{r.new_topic_s:g} s before':<9}  {r.extra}")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps([{**asdict(r), "stalled": r.stalled} for r in rows], indent=2))
    say(f"wrote {args.json}")


if __name__ == "__main__":
    main()
