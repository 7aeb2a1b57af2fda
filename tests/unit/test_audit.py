"""The supply-chain audit: findings fail unless excepted with a reason and a future expiry;
unaudited pins are reported, not hidden; the locks agree with each other."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pytest

from stream.tools.audit import fill_from_project_pages, judge, load_exceptions, lock_pins

TODAY = dt.date(2026, 12, 1)
REPORT = {"dependencies": [
    {"name": "aiohttp", "version": "3.9.0", "vulns": [
        {"id": "GHSA-aaaa", "fix_versions": ["3.9.2"], "aliases": ["CVE-2024-1"]},
        {"id": "PYSEC-bbbb", "fix_versions": [], "aliases": []}]},
    {"name": "six", "version": "1.17.0", "vulns": []},
    {"name": "yarl", "skip_reason": "Dependency not found on PyPI and could not be audited"}]}


def exceptions(tmp_path: Path, text: str) -> dict[str, dict[str, object]]:
    path = tmp_path / "audit-exceptions.toml"
    path.write_text(text)
    return load_exceptions(path)


def test_a_known_vulnerability_fails_unless_excepted(tmp_path: Path) -> None:
    verdict = judge(REPORT, {}, TODAY)
    assert verdict.audited == 2
    assert len(verdict.failing) == 2
    assert "aiohttp 3.9.0: GHSA-aaaa (fixed in 3.9.2)" in verdict.failing[0]
    assert verdict.unaudited == ["yarl: Dependency not found on PyPI and could not be audited"]

    excepted = exceptions(tmp_path, '''
[[exception]]
id = "CVE-2024-1"
reason = "proxy support only; never configured"
expires = 2027-01-31
[[exception]]
id = "PYSEC-bbbb"
reason = "waiting for a release"
expires = 2026-11-30
''')
    verdict = judge(REPORT, excepted, TODAY)
    assert [f.vuln_id for f, _why in verdict.excepted] == ["GHSA-aaaa"]  # by its alias
    assert len(verdict.failing) == 1
    assert "expired on 2026-11-30" in verdict.failing[0]


def test_an_exception_needs_a_reason_and_a_date(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="lacks reason"):
        exceptions(tmp_path, '[[exception]]\nid = "X"\nexpires = 2027-01-01\n')
    with pytest.raises(ValueError, match="must be a date"):
        exceptions(tmp_path, '[[exception]]\nid = "X"\nreason = "r"\nexpires = "soon"\n')


def pins(path: Path) -> dict[str, str]:
    out = {}
    for line in path.read_text().splitlines():
        if "==" in line and not line.startswith((" ", "#")):
            name, _, rest = line.partition("==")
            version = rest.split()[0]
            marker = line.partition(";")[2].split("\\")[0].strip()
            if "3.12" in marker and ">=" in marker:
                continue  # the other Python's pick
            out[name.strip().lower()] = version
    return out


def test_pins_pip_audit_skipped_are_audited_from_project_pages_when_latest() -> None:
    """Where per-version lookups go unanswered, a pin at the latest release is audited from
    the project page (a known vulnerability still fails the run); an older pin, or a
    project whose page does not answer, stays unaudited with the reason."""
    lock = ("aiohttp==3.9.0 \\\n    --hash=sha256:00\nPyYAML==6.0.2 \\\n    --hash=sha256:11\n"
            "six==1.16.0 \\\n    --hash=sha256:22\nyarl==1.9.4 \\\n    --hash=sha256:33\n")
    pins = lock_pins(lock)
    assert pins == {"aiohttp": "3.9.0", "pyyaml": "6.0.2", "six": "1.16.0", "yarl": "1.9.4"}
    skipped = "Dependency not found on PyPI and could not be audited"
    report = {"dependencies": [{"name": n, "skip_reason": skipped}
                               for n in ("aiohttp", "PyYAML", "six", "yarl")]}
    pages: dict[str, dict[str, Any]] = {
        "aiohttp": {"info": {"version": "3.9.0"}, "vulnerabilities": [
            {"id": "GHSA-x", "fixed_in": ["3.9.2"], "aliases": ["CVE-1"], "withdrawn": None},
            {"id": "GHSA-gone", "fixed_in": [], "aliases": [], "withdrawn": "2024-01-01"}]},
        "PyYAML": {"info": {"version": "6.0.2"}, "vulnerabilities": []},
        "six": {"info": {"version": "1.17.0"}, "vulnerabilities": []},
    }
    assert fill_from_project_pages(report, pins, fetch=lambda name: pages.get(name), workers=2) == 2
    verdict = judge(report, {}, TODAY)
    assert verdict.audited == 2
    assert len(verdict.failing) == 1
    assert "aiohttp 3.9.0: GHSA-x (fixed in 3.9.2)" in verdict.failing[0]
    assert verdict.unaudited == [
        "six: 1.16.0 is not the latest release (1.17.0), and PyPI's per-version data is not "
        "served here",
        f"yarl: {skipped}; its PyPI project page did not answer either"]


def test_the_image_ships_what_the_tests_ran() -> None:
    """Every runtime pin (the worker image's) has the same version in the dev lock (what
    setup.sh installs and the tests run), and every pin carries hashes."""
    locks = Path(__file__).resolve().parents[2] / "compose" / "locks"
    runtime, dev = pins(locks / "runtime.txt"), pins(locks / "dev.txt")
    assert runtime, "no pins read from runtime.txt"
    differ = {n: (v, dev.get(n)) for n, v in runtime.items() if dev.get(n) != v}
    assert not differ, f"runtime and dev locks disagree (refresh both): {differ}"
    for lock in ("runtime.txt", "dev.txt", "bench-quix.txt"):
        text = (locks / lock).read_text()
        assert text.count("==") <= text.count("--hash=sha256:"), f"{lock} has unhashed pins"


def make_wheel(where: Path) -> Path:
    """A minimal pure-Python wheel (a local file: the test reaches no index)."""
    import zipfile

    wheel = where / "demo_pkg-0.1-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as z:
        z.writestr("demo_pkg/__init__.py", "VALUE = 1\n")
        z.writestr("demo_pkg-0.1.dist-info/METADATA",
                   "Metadata-Version: 2.1\nName: demo-pkg\nVersion: 0.1\n")
        z.writestr("demo_pkg-0.1.dist-info/WHEEL",
                   "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n")
        z.writestr("demo_pkg-0.1.dist-info/RECORD", "demo_pkg/__init__.py,,\n"
                   "demo_pkg-0.1.dist-info/METADATA,,\ndemo_pkg-0.1.dist-info/WHEEL,,\n"
                   "demo_pkg-0.1.dist-info/RECORD,,\n")
    return wheel


def test_install_from_a_lock_checks_hashes_and_says_what_a_mismatch_means(tmp_path: Path) -> None:
    import hashlib
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[2]
    wheel = make_wheel(tmp_path)
    good = hashlib.sha256(wheel.read_bytes()).hexdigest()
    venv = Path(sys.executable).parents[1]  # installs go to --target, not into the venv

    def install(digest: str, target: str) -> subprocess.CompletedProcess[str]:
        lock = tmp_path / f"{target}.txt"
        lock.write_text(f"demo-pkg==0.1 --hash=sha256:{digest}\n")
        return subprocess.run(
            ["bash", str(root / "compose" / "locks" / "install.sh"), str(venv), str(lock),
             "--no-index", "--find-links", str(tmp_path), "--target", str(tmp_path / target)],
            capture_output=True, text=True, timeout=120, check=False)

    ok = install(good, "good")
    assert ok.returncode == 0, ok.stderr
    assert (tmp_path / "good" / "demo_pkg" / "__init__.py").exists()
    bad = install("0" * 64, "bad")
    assert bad.returncode == 3, bad.stderr
    assert "does not match its hash" in bad.stderr
    assert "compose/locks/refresh.sh" in bad.stderr
    assert not (tmp_path / "bad" / "demo_pkg").exists()
