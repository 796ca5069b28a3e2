"""tools/audit_deps.py against a PyPI-shaped JSON server on 127.0.0.1."""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import socket
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "tools" / "audit_deps.py"


def _load_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("audit_deps", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


audit_deps = _load_script()

VULN = {
    "id": "PYSEC-2026-1",
    "aliases": ["CVE-2026-0001"],
    "fixed_in": ["1.0.1"],
    "summary": "a flaw",
    "link": "https://osv.dev/vulnerability/PYSEC-2026-1",
    "withdrawn": None,
}
WITHDRAWN = {**VULN, "id": "PYSEC-2026-2", "withdrawn": "2026-02-01T00:00:00Z"}


class FakePyPI:
    """Serves ``/pypi/<name>[/<version>]/json`` from a dict; everything else is a 404."""

    def __init__(self, pages: dict[str, dict[str, Any]]) -> None:
        self.pages = pages
        self.requested: list[str] = []

    def handler(self) -> type[BaseHTTPRequestHandler]:
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                outer.requested.append(self.path)
                page = outer.pages.get(self.path)
                body = json.dumps(page).encode() if page is not None else b""
                self.send_response(200 if page is not None else 404)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        return Handler


@pytest.fixture
def pypi() -> Iterator[tuple[FakePyPI, str]]:
    fake = FakePyPI({})
    server = ThreadingHTTPServer(("127.0.0.1", 0), fake.handler())
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield fake, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def page(version: str, *vulns: dict[str, Any]) -> dict[str, Any]:
    return {"info": {"version": version}, "vulnerabilities": list(vulns)}


def test_a_release_page_answers_for_exactly_that_version(pypi: tuple[FakePyPI, str]) -> None:
    fake, url = pypi
    fake.pages["/pypi/demo/1.0.0/json"] = page("1.2.0", VULN, WITHDRAWN)
    finding = audit_deps.audit_one(audit_deps.Distribution("demo", "1.0.0"), url)
    assert finding.status == "vulnerable"
    assert finding.source == "release"
    # A withdrawn advisory is not a finding.
    assert [v["id"] for v in finding.vulnerabilities] == ["PYSEC-2026-1"]
    assert "VULNERABLE demo 1.0.0: PYSEC-2026-1 (CVE-2026-0001); fixed in 1.0.1" in (
        audit_deps.report([finding])
    )


def test_the_local_version_label_is_not_sent(pypi: tuple[FakePyPI, str]) -> None:
    fake, url = pypi
    fake.pages["/pypi/torch/2.13.0/json"] = page("2.15.0")
    finding = audit_deps.audit_one(audit_deps.Distribution("torch", "2.13.0+cpu"), url)
    assert (finding.status, finding.version) == ("ok", "2.13.0+cpu")
    assert fake.requested == ["/pypi/torch/2.13.0/json"]


def test_without_release_pages_the_project_page_answers_only_for_the_latest(
    pypi: tuple[FakePyPI, str],
) -> None:
    fake, url = pypi
    fake.pages["/pypi/fresh/json"] = page("2.0.0")
    fake.pages["/pypi/unfixed/json"] = page("0.19.2", VULN)
    fake.pages["/pypi/held-back/json"] = page("3.18.0", VULN)
    findings = audit_deps.audit(
        [
            audit_deps.Distribution("fresh", "2.0.0"),
            audit_deps.Distribution("unfixed", "0.19.2"),
            audit_deps.Distribution("held-back", "3.17.2"),
            audit_deps.Distribution("absent", "1.0"),
        ],
        url,
    )
    assert [(f.name, f.status) for f in findings] == [
        ("fresh", "ok"),
        ("unfixed", "vulnerable"),
        ("held-back", "not checked"),
        ("absent", "not checked"),
    ]
    # The latest release's advisories say nothing about an older one: not borrowed.
    assert findings[2].vulnerabilities == []
    assert findings[2].latest == "3.18.0"
    text = audit_deps.report(findings)
    assert text.startswith("4 distributions: 1 with no known vulnerability, 1 vulnerable, 2 not")
    assert "not checked held-back 3.17.2 (latest 3.18.0)" in text
    assert "not checked absent 1.0: not on PyPI" in text


def test_an_unreachable_index_checks_nothing_and_says_so() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed again before the request: nobody listens
    finding = audit_deps.audit_one(
        audit_deps.Distribution("demo", "1.0"), f"http://127.0.0.1:{port}"
    )
    assert finding.status == "not checked"
    assert finding.source.startswith("PyPI unreachable")


def test_the_exit_status_audits_this_environment(
    pypi: tuple[FakePyPI, str], tmp_path: Path
) -> None:
    fake, url = pypi
    installed = importlib.metadata.version("pytest")
    report_path = tmp_path / "audit.json"
    # An index that knows nothing: every distribution is unchecked.
    assert audit_deps.main(["--index", url]) == 0
    assert audit_deps.main(["--index", url, "--strict"]) == 2
    names = {p.split("/")[2] for p in fake.requested}
    assert "pytest" in names
    assert "aeops" not in names  # the project itself is not a dependency

    fake.pages[f"/pypi/pytest/{installed}/json"] = page(installed, VULN)
    assert audit_deps.main(["--index", url, "--json", str(report_path)]) == 1
    written = {f["name"]: f for f in json.loads(report_path.read_text())}
    assert written["pytest"]["status"] == "vulnerable"
    assert written["pytest"]["vulnerabilities"][0]["id"] == "PYSEC-2026-1"
    assert not list(tmp_path.glob("*.tmp"))
