"""``python -m stream.tools.audit``: pip-audit over the lock files, with exceptions that
expire.

Runs ``pip-audit`` (PyPI's vulnerability data) on ``compose/locks/{dev,bench-quix}.txt``
without installing anything (the locks are fully pinned and hashed) and reports:

* every known vulnerability of a locked version: it fails the run unless
  ``compose/locks/audit-exceptions.toml`` lists its id with a reason and an expiry date
  that has not passed (an expired exception fails like no exception, naming itself);
* every dependency that could not be audited (the service had no answer for it). That
  is a warning, or a failure with ``--strict``.

Where PyPI's per-version JSON API is not served (as on the project's build machines,
where ``/pypi/NAME/VERSION/json`` answers 404, so pip-audit audits nothing), the pins
pip-audit skipped are looked up on the project page ``/pypi/NAME/json``, whose
``vulnerabilities`` are PyPI's data for the *latest* release: a pin at the latest release
is audited from it, an older pin stays "not audited" and is named, so the report never
pretends the set is clean.

The test command runs it; ``--strict`` is for machines that reach the service.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import re
import subprocess
import sys
import tomllib
import urllib.parse
import urllib.request
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from packaging.utils import canonicalize_name  # pip-audit's own dependency

ROOT = Path(__file__).resolve().parents[2]
LOCKS = (ROOT / "compose" / "locks" / "dev.txt", ROOT / "compose" / "locks" / "bench-quix.txt")
EXCEPTIONS = ROOT / "compose" / "locks" / "audit-exceptions.toml"


@dataclass(frozen=True)
class Finding:
    """One known vulnerability of a locked version."""

    package: str
    version: str
    vuln_id: str
    fix_versions: tuple[str, ...]
    aliases: tuple[str, ...] = ()


@dataclass
class Verdict:
    """What the audit found, and what it means for the run."""

    findings: list[Finding] = field(default_factory=list)
    excepted: list[tuple[Finding, str]] = field(default_factory=list)  # (finding, reason)
    failing: list[str] = field(default_factory=list)  # one line each
    unaudited: list[str] = field(default_factory=list)  # "name: why"
    audited: int = 0


def load_exceptions(path: Path) -> dict[str, dict[str, Any]]:
    """Exceptions by vulnerability id; each has ``reason`` and ``expires`` (a date)."""
    if not path.exists():
        return {}
    entries = tomllib.loads(path.read_text()).get("exception", [])
    out: dict[str, dict[str, Any]] = {}
    for entry in entries:
        missing = [k for k in ("id", "reason", "expires") if not entry.get(k)]
        if missing:
            raise ValueError(f"{path}: an exception lacks {', '.join(missing)}: {entry}")
        if not isinstance(entry["expires"], dt.date):
            raise ValueError(f"{path}: {entry['id']}: expires must be a date (2027-01-31)")
        out[entry["id"]] = entry
    return out


def judge(report: dict[str, Any], exceptions: dict[str, dict[str, Any]],
          today: dt.date) -> Verdict:
    """Sort pip-audit's JSON report into passing, excepted, failing and unaudited."""
    verdict = Verdict()
    for dep in report.get("dependencies", []):
        if "skip_reason" in dep:
            verdict.unaudited.append(f"{dep['name']}: {dep['skip_reason']}")
            continue
        verdict.audited += 1
        for vuln in dep.get("vulns", []):
            finding = Finding(dep["name"], dep["version"], vuln["id"],
                              tuple(vuln.get("fix_versions", [])),
                              tuple(vuln.get("aliases", [])))
            verdict.findings.append(finding)
            entry = next((exceptions[i] for i in (finding.vuln_id, *finding.aliases)
                          if i in exceptions), None)
            fix = ", ".join(finding.fix_versions) or "no fixed release yet"
            if entry is None:
                verdict.failing.append(
                    f"{finding.package} {finding.version}: {finding.vuln_id} (fixed in {fix}); "
                    f"upgrade it (bash compose/locks/refresh.sh --upgrade-package "
                    f"{finding.package}) or list it in {EXCEPTIONS.name} with a reason and "
                    "an expiry date")
            elif entry["expires"] < today:
                verdict.failing.append(
                    f"{finding.package} {finding.version}: {finding.vuln_id}: its exception "
                    f"expired on {entry['expires']} ({entry['reason']}); upgrade or renew it")
            else:
                verdict.excepted.append((finding, f"{entry['reason']} (until {entry['expires']})"))
    return verdict


Fetch = Callable[[str], dict[str, Any] | None]


def project_page(name: str) -> dict[str, Any] | None:
    """PyPI's JSON for a project (None when it cannot be had)."""
    url = f"https://pypi.org/pypi/{urllib.parse.quote(name)}/json"
    try:
        with urllib.request.urlopen(url, timeout=20) as answer:
            page: dict[str, Any] = json.load(answer)
    except (OSError, ValueError):
        return None
    return page


def lock_pins(lock_text: str) -> dict[str, str]:
    """Canonical name -> pinned version, from a hashed requirements lock."""
    return {canonicalize_name(n): v for n, v in
            re.findall(r"^([A-Za-z0-9][A-Za-z0-9_.-]*)==([^\s;\\]+)", lock_text, re.MULTILINE)}


def fill_from_project_pages(report: dict[str, Any], pins: dict[str, str],
                            fetch: Fetch = project_page, workers: int = 8) -> int:
    """Audit the pins pip-audit skipped from the project pages where the pin is the
    latest release (see the module docstring); returns how many were filled in."""
    skipped = [d for d in report.get("dependencies", []) if "skip_reason" in d]
    for dep in skipped:
        dep.setdefault("version", pins.get(canonicalize_name(dep["name"]), "?"))
    with ThreadPoolExecutor(workers) as pool:
        pages = list(pool.map(lambda d: fetch(d["name"]), skipped))
    filled = 0
    for dep, page in zip(skipped, pages, strict=True):
        latest = (page or {}).get("info", {}).get("version")
        if page is None:
            dep["skip_reason"] += "; its PyPI project page did not answer either"
            continue
        if latest != dep["version"]:
            dep["skip_reason"] = (f"{dep['version']} is not the latest release ({latest}), "
                                  "and PyPI's per-version data is not served here")
            continue
        del dep["skip_reason"]
        dep["vulns"] = [{"id": v.get("id", "?"), "fix_versions": v.get("fixed_in") or [],
                         "aliases": v.get("aliases") or []}
                        for v in page.get("vulnerabilities") or [] if not v.get("withdrawn")]
        dep["audited_from"] = "project page"
        filled += 1
    return filled


def run_pip_audit(lock: Path) -> dict[str, Any]:
    """pip-audit's JSON report on one lock file (no install: the lock is hashed)."""
    done = subprocess.run(  # noqa: S603 - our interpreter, fixed arguments
        [sys.executable, "-m", "pip_audit", "-r", str(lock), "--require-hashes",
         "--disable-pip", "--format", "json", "--progress-spinner", "off"],
        capture_output=True, text=True, timeout=600, check=False)
    try:
        report: dict[str, Any] = json.loads(done.stdout)
    except json.JSONDecodeError:
        raise RuntimeError(f"pip-audit on {lock.name} gave no report (exit "
                           f"{done.returncode}):\n{done.stderr[-2000:]}") from None
    return report


def main(argv: list[str] | None = None) -> int:
    """Audit the locks; exit 1 on failing findings (or, with --strict, unaudited ones)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--strict", action="store_true",
                        help="also fail when a dependency could not be audited")
    args = parser.parse_args(argv)
    exceptions = load_exceptions(EXCEPTIONS)
    failed = False
    for lock in LOCKS:
        report = run_pip_audit(lock)
        filled = fill_from_project_pages(report, lock_pins(lock.read_text()))
        verdict = judge(report, exceptions, dt.date.today())
        if filled:
            print(f"[audit] {lock.relative_to(ROOT)}: pip-audit's per-version lookups were "
                  f"not answered; {filled} pins at their latest release audited from PyPI's "
                  "project pages", file=sys.stderr)
        print(f"[audit] {lock.relative_to(ROOT)}: {verdict.audited} audited, "
              f"{len(verdict.findings)} known vulnerabilities ({len(verdict.excepted)} "
              f"excepted, {len(verdict.failing)} failing), {len(verdict.unaudited)} not "
              "audited", file=sys.stderr)
        for finding, why in verdict.excepted:
            print(f"[audit]   excepted {finding.package} {finding.version} "
                  f"{finding.vuln_id}: {why}", file=sys.stderr)
        for line in verdict.failing:
            print(f"[audit]   FAIL {line}", file=sys.stderr)
        if verdict.unaudited and not verdict.audited:
            print("[audit]   WARNING: nothing could be audited: the vulnerability service "
                  f"answered for none of the {len(verdict.unaudited)} pins (first: "
                  f"{verdict.unaudited[0]}). Run `python -m stream.tools.audit --strict` "
                  "where PyPI's JSON API is served in full.", file=sys.stderr)
        elif verdict.unaudited:
            print(f"[audit]   not audited ({len(verdict.unaudited)}): "
                  f"{'; '.join(verdict.unaudited[:8])}", file=sys.stderr)
        failed |= bool(verdict.failing) or (args.strict and bool(verdict.unaudited))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
