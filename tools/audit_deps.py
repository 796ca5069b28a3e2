"""Audit the installed dependency set against PyPI's vulnerability data.

Run it in the environment to audit (the CI one is ``pip install -e ".[dev]"``)::

    python tools/audit_deps.py [--json report.json] [--strict]

Where the OSV service is reachable, ``pip-audit`` is the standard tool and says the same
things. This script exists for networks that reach pypi.org but not api.osv.dev (the
machines this project is built on): it reads the vulnerabilities that PyPI publishes with
each release (OSV records from the PyPA advisory database and GitHub's).

For every installed distribution except the project itself it asks, in order:

1. ``/pypi/<name>/<version>/json``: the vulnerabilities of exactly that release (what
   pip-audit's ``pypi`` service reads);
2. where that endpoint is not served, ``/pypi/<name>/json``: its vulnerabilities are
   the latest release's, so they answer only when the installed version *is* the latest.

A distribution that neither answers is reported as *not checked*, with the latest
version, so a person can look its advisories up; ``--strict`` makes that a failure.

Exit status: 0 when nothing known is found, 1 when a vulnerability affects an installed
version, 2 when ``--strict`` is given and some distribution could not be checked.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import dataclasses
import importlib.metadata
import json
import logging
import re
import sys
import urllib.error
import urllib.request
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

log = logging.getLogger("audit_deps")

PYPI = "https://pypi.org"
SELF = "aeops"


@dataclasses.dataclass(frozen=True)
class Distribution:
    name: str
    version: str

    @property
    def public_version(self) -> str:
        """The version without its local label: torch ``2.13.0+cpu`` is ``2.13.0`` on PyPI."""
        return self.version.split("+", 1)[0]


@dataclasses.dataclass
class Finding:
    name: str
    version: str
    status: str  # "ok" | "vulnerable" | "not checked"
    source: str  # which endpoint answered, or why none did
    latest: str | None = None
    vulnerabilities: list[dict[str, Any]] = dataclasses.field(default_factory=list)


def canonical_name(name: str) -> str:
    """PEP 503 normalisation, so ``PyYAML`` and ``pyyaml`` are one distribution."""
    return re.sub(r"[-_.]+", "-", name).lower()


def installed_distributions(exclude: Iterable[str] = (SELF,)) -> list[Distribution]:
    """The distributions of the running interpreter, one per name, sorted."""
    skip = {canonical_name(n) for n in exclude}
    found: dict[str, Distribution] = {}
    for dist in importlib.metadata.distributions():
        name = dist.metadata["Name"]
        if name and canonical_name(name) not in skip:
            found.setdefault(canonical_name(name), Distribution(canonical_name(name), dist.version))
    return [found[k] for k in sorted(found)]


def _get_json(url: str, timeout: float) -> dict[str, Any] | None:
    """The JSON at ``url``, or None when the server says it has no such page (404)."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            payload: dict[str, Any] = json.load(response)
            return payload
    except urllib.error.HTTPError as exc:
        if exc.code == 404:
            return None
        raise


def _summarise(vulns: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    keep = ("id", "aliases", "fixed_in", "summary", "link", "withdrawn")
    return [{k: v.get(k) for k in keep if v.get(k) is not None} for v in vulns]


def _active(vulns: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    return [v for v in vulns if not v.get("withdrawn")]


def _judged(dist: Distribution, page: dict[str, Any], source: str, latest: str | None) -> Finding:
    """A finding from a PyPI page whose ``vulnerabilities`` speak for ``dist``'s version."""
    vulns = _active(page.get("vulnerabilities", []))
    status = "vulnerable" if vulns else "ok"
    return Finding(dist.name, dist.version, status, source, latest, _summarise(vulns))


def audit_one(dist: Distribution, base_url: str = PYPI, timeout: float = 30.0) -> Finding:
    """Ask PyPI what is known against one installed distribution (see the module doc)."""
    base = base_url.rstrip("/")
    try:
        release = _get_json(f"{base}/pypi/{dist.name}/{dist.public_version}/json", timeout)
        if release is not None:
            return _judged(dist, release, "release", latest=None)
        project = _get_json(f"{base}/pypi/{dist.name}/json", timeout)
    except (urllib.error.URLError, TimeoutError, OSError, ValueError) as exc:
        return Finding(dist.name, dist.version, "not checked", f"PyPI unreachable: {exc}")
    if project is None:
        return Finding(dist.name, dist.version, "not checked", "not on PyPI")
    latest = project.get("info", {}).get("version")
    if latest != dist.public_version:
        return Finding(
            dist.name,
            dist.version,
            "not checked",
            f"only the latest release's data is served, and {latest} is newer",
            latest=latest,
        )
    return _judged(dist, project, "project (installed is the latest)", latest)


def audit(dists: Sequence[Distribution], base_url: str = PYPI, workers: int = 16) -> list[Finding]:
    """Audit many distributions concurrently; the findings keep the input's order."""
    with concurrent.futures.ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(lambda d: audit_one(d, base_url), dists))


def report(findings: Sequence[Finding]) -> str:
    """A plain-text summary: counts, then every vulnerable and every unchecked entry."""
    by_status: dict[str, list[Finding]] = {"ok": [], "vulnerable": [], "not checked": []}
    for finding in findings:
        by_status[finding.status].append(finding)
    lines = [
        f"{len(findings)} distributions: {len(by_status['ok'])} with no known vulnerability, "
        f"{len(by_status['vulnerable'])} vulnerable, {len(by_status['not checked'])} not checked"
    ]
    for f in by_status["vulnerable"]:
        for v in f.vulnerabilities:
            fixed = ", ".join(v.get("fixed_in") or []) or "no fix released"
            aliases = ", ".join(v.get("aliases") or [])
            lines.append(
                f"VULNERABLE {f.name} {f.version}: {v['id']} ({aliases}); fixed in {fixed}"
            )
    for f in by_status["not checked"]:
        latest = f" (latest {f.latest})" if f.latest else ""
        lines.append(f"not checked {f.name} {f.version}{latest}: {f.source}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--index", default=PYPI, help="PyPI's base URL (default: %(default)s)")
    parser.add_argument("--json", type=Path, help="also write every finding to this file")
    parser.add_argument(
        "--strict", action="store_true", help="exit 2 when a distribution could not be checked"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    findings = audit(installed_distributions(), args.index)
    log.info("%s", report(findings))
    if args.json:
        tmp = args.json.with_name(args.json.name + ".tmp")
        tmp.write_text(json.dumps([dataclasses.asdict(f) for f in findings], indent=2) + "\n")
        tmp.replace(args.json)
    if any(f.status == "vulnerable" for f in findings):
        return 1
    if args.strict and any(f.status == "not checked" for f in findings):
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
