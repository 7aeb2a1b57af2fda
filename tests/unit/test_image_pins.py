"""The base images' Debian packages are pinned: what dpkg installed is checked against
compose/<kind>/packages.txt, and a difference names the package and both versions."""

from __future__ import annotations

from pathlib import Path

from stream.devcluster.images import _base_packages, installed_versions, pin_problems

STATUS = """Package: redis-server
Status: install ok installed
Version: 5:7.0.15-1~deb12u7

Package: procps
Status: install ok installed
Version: 2:4.0.2-3
"""


def test_installed_versions_are_read_from_dpkgs_status(tmp_path: Path) -> None:
    status = tmp_path / "var" / "lib" / "dpkg" / "status"
    status.parent.mkdir(parents=True)
    status.write_text(STATUS)
    installed = installed_versions(tmp_path)
    assert installed == {"redis-server": "5:7.0.15-1~deb12u7", "procps": "2:4.0.2-3"}
    assert pin_problems({"redis-server": "5:7.0.15-1~deb12u7", "procps": None}, installed) == []
    drift = pin_problems({"redis-server": "5:7.0.15-1~deb12u8", "python3": "3.11.2-1+b1"},
                         installed)
    assert drift == ["redis-server: pinned 5:7.0.15-1~deb12u8, Debian served 5:7.0.15-1~deb12u7",
                     "python3: pinned 3.11.2-1+b1, Debian served nothing"]


def test_every_base_package_is_pinned() -> None:
    for kind in ("base", "worker"):
        pins = _base_packages(kind)
        assert pins, kind
        assert all(version for version in pins.values()), f"compose/{kind}/packages.txt: {pins}"


def test_every_image_recipe_drops_root() -> None:
    """Kafka, Redis, MirrorMaker and the worker images end with a USER that is not root
    (the integration suite checks PID 1's uid in running containers)."""
    import re

    compose = Path(__file__).resolve().parents[2] / "compose"
    recipes = sorted(compose.glob("*/Dockerfile*"))
    assert {p.parent.name for p in recipes} >= {"kafka", "redis", "mirrormaker", "worker"}
    for recipe in recipes:
        users = re.findall(r"^USER\s+(\S+)", recipe.read_text(), re.MULTILINE)
        assert users, f"{recipe} has no USER: its containers would run as root"
        assert users[-1].split(":")[0] not in ("root", "0"), f"{recipe}: USER {users[-1]}"
