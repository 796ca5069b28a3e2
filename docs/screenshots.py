"""Take the README tour's screenshots: the MLflow UI comparing runs, and kedro-viz.

Run from anywhere with the project's dev environment and a Chromium binary::

    python docs/screenshots.py [--chromium PATH] [--out DIR] [--keep | --reuse DIR]

It copies the project into a temporary folder, trains three models there
(``kedro run --pipeline=train --params=model.kind=...`` for vanilla, denoising and vae),
serves that copy's ``mlflow.db`` with ``mlflow ui`` on 127.0.0.1, and drives headless
Chromium over the DevTools protocol to take the screenshots into ``docs/images/``. When
kedro-viz is importable (``pip install -e ".[viz]"``) it also serves ``kedro viz run``
and shoots the ``train`` pipeline; otherwise it says so and skips that picture.

Chromium is spoken to through ``--remote-debugging-pipe`` (NUL-terminated JSON on file
descriptors 3 and 4), so the script needs nothing beyond the standard library and the
dev environment (Pillow comes with matplotlib). Nothing listens beyond 127.0.0.1.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import fcntl
import importlib.util
import io
import json
import logging
import os
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from mlflow.tracking import MlflowClient
from PIL import Image

DOCS = Path(__file__).resolve().parent
sys.path.insert(0, str(DOCS.parent / "tests"))  # tests/support.py: the project copy helper

from support import KedroProject, free_port, output_of  # noqa: E402

logger = logging.getLogger("screenshots")

MODEL_KINDS = ("vanilla", "denoising", "vae")
COMPARED_METRICS = ("test_auroc", "test_auprc", "test_f1")
# Columns switched in the runs table's picker: two default ones off, to make room, then ours on.
RUNS_TABLE_TOGGLED_COLUMNS = ("Dataset", "Source", "model.kind", *COMPARED_METRICS)
MAX_PNG_BYTES = 400_000

# Defined in every page before its own scripts: find the element whose own text is `t`.
BY_TEXT_JS = """
window.__byText = (t) => {
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  while (walker.nextNode()) {
    if (walker.currentNode.nodeValue.trim() === t) return walker.currentNode.parentElement;
  }
  return null;
};
"""
# MLflow's assistant panel opens itself on a first visit and would cover a third of the page;
# the sidebar starts in its GenAI mode.
MLFLOW_QUIET_JS = """
localStorage.setItem('mlflow.workflowType_v1', '"machine_learning"');
localStorage.setItem('mlflow.assistant.panelOpen_v1', 'false');
localStorage.setItem('mlflow.assistant.fab.autoOpenedOnFirstLoad_v1', 'true');
"""
# kedro-viz's own settings: light theme, raw node names, no tour pop-ups or minimap.
KEDRO_VIZ_SETTINGS = {
    "theme": "light",
    "isPrettyName": False,
    "showFeatureHints": False,
    "orientation": "vertical",
    "nodeType": {"disabled": {"parameters": True, "task": False, "data": False}},
    "visible": {
        "code": False,
        "graph": True,
        "miniMap": False,
        "sidebar": True,
        "slicing": True,
        "traceback": False,
    },
}


class ScreenshotError(RuntimeError):
    """A step of the screenshot script failed; the message names the step."""


class Chromium:
    """Headless Chromium driven over the DevTools protocol through a pipe.

    Args:
        binary: Path to the chromium executable.
        width: Viewport width in CSS pixels.
        height: Viewport height in CSS pixels.
    """

    def __init__(self, binary: str, width: int, height: int) -> None:
        self.profile = Path(tempfile.mkdtemp(prefix="aeops-chromium-"))
        to_browser_read, self._to_browser = os.pipe()
        self._from_browser, from_browser_write = os.pipe()

        def wire_pipes() -> None:  # in the child: the protocol's fds are 3 (in) and 4 (out)
            read_end = fcntl.fcntl(to_browser_read, fcntl.F_DUPFD, 10)
            write_end = fcntl.fcntl(from_browser_write, fcntl.F_DUPFD, 10)
            os.dup2(read_end, 3)
            os.dup2(write_end, 4)

        self.process = subprocess.Popen(
            [
                binary,
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--hide-scrollbars",
                f"--user-data-dir={self.profile}",
                f"--window-size={width},{height}",
                "--remote-debugging-pipe",
                "about:blank",
            ],
            preexec_fn=wire_pipes,
            close_fds=False,  # our other descriptors are non-inheritable (PEP 446)
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        os.close(to_browser_read)
        os.close(from_browser_write)
        self._buffer = b""
        self._last_id = 0
        self._session: str | None = None
        try:
            target = self.send("Target.createTarget", url="about:blank")["targetId"]
            attached = self.send("Target.attachToTarget", targetId=target, flatten=True)
            self._session = attached["sessionId"]
            self.send("Page.enable")
            self.resize(width, height)
        except ScreenshotError:
            self.close()
            raise

    def send(self, method: str, timeout: float = 60, **params: Any) -> dict[str, Any]:
        """Send one protocol command and return its result (events are skipped)."""
        self._last_id += 1
        message: dict[str, Any] = {"id": self._last_id, "method": method, "params": params}
        if self._session is not None and not method.startswith("Target."):
            message["sessionId"] = self._session
        os.write(self._to_browser, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while True:
            reply = json.loads(self._read_message(deadline))
            if reply.get("id") != self._last_id:
                continue
            if "error" in reply:
                raise ScreenshotError(f"chromium: {method} failed: {reply['error']}")
            return dict(reply.get("result", {}))

    def _read_message(self, deadline: float) -> bytes:
        while b"\0" not in self._buffer:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not select.select([self._from_browser], [], [], remaining)[0]:
                raise ScreenshotError("chromium did not answer in time")
            chunk = os.read(self._from_browser, 1 << 20)
            if not chunk:
                raise ScreenshotError(f"chromium exited (code {self.process.poll()})")
            self._buffer += chunk
        message, self._buffer = self._buffer.split(b"\0", 1)
        return message

    def resize(self, width: int, height: int) -> None:
        """Set the viewport, in CSS pixels at scale 1."""
        self.send(
            "Emulation.setDeviceMetricsOverride",
            width=width,
            height=height,
            deviceScaleFactor=1,
            mobile=False,
        )

    def before_each_page(self, script: str) -> None:
        """Run ``script`` in every page from now on, before the page's own scripts."""
        self.send("Page.addScriptToEvaluateOnNewDocument", source=script)

    def open(self, url: str, ready: str, what: str, timeout: float = 90) -> None:
        """Load ``url`` and wait until the JavaScript expression ``ready`` is true."""
        self.send("Page.navigate", url=url)
        self.wait_for(f"!!({ready})", what, timeout)

    def js(self, expression: str) -> Any:
        """Evaluate ``expression`` in the page and return its JSON value."""
        result = self.send(
            "Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True
        )
        if "exceptionDetails" in result:
            details = result["exceptionDetails"]
            text = details.get("exception", {}).get("description") or details.get("text")
            raise ScreenshotError(f"page script failed: {text}\n{expression}")
        return result["result"].get("value")

    def wait_for(self, expression: str, what: str, timeout: float = 60) -> Any:
        """Poll ``expression`` until it is truthy; fail naming ``what`` after ``timeout``."""
        deadline = time.monotonic() + timeout
        while True:
            with contextlib.suppress(ScreenshotError):  # the page may still be loading
                value = self.js(expression)
                if value:
                    return value
            if time.monotonic() > deadline:
                raise ScreenshotError(f"timed out after {timeout:.0f} s waiting for {what}")
            time.sleep(0.25)

    def click(self, element: str, what: str, timeout: float = 30) -> None:
        """Click, as a mouse would, the element the JavaScript expression ``element`` gives."""
        x, y = self.wait_for(
            f"""(() => {{
              const e = ({element});
              if (!e) return null;
              e.scrollIntoView({{block: 'nearest'}});
              const r = e.getBoundingClientRect();
              return r.width && r.height ? [r.x + r.width / 2, r.y + r.height / 2] : null;
            }})()""",
            what,
            timeout,
        )
        for kind in ("mouseMoved", "mousePressed", "mouseReleased"):
            self.send("Input.dispatchMouseEvent", type=kind, x=x, y=y, button="left", clickCount=1)
        time.sleep(0.4)

    def type_text(self, text: str) -> None:
        """Type ``text`` into the focused element."""
        self.send("Input.insertText", text=text)
        time.sleep(0.4)

    def press_escape(self) -> None:
        """Press Escape (closes dropdowns)."""
        for kind in ("keyDown", "keyUp"):
            self.send(
                "Input.dispatchKeyEvent",
                type=kind,
                key="Escape",
                code="Escape",
                windowsVirtualKeyCode=27,
            )
        time.sleep(0.3)

    def screenshot(self, path: Path, height: int | None = None, width: int | None = None) -> None:
        """Save the viewport as a PNG, cropped to ``width`` x ``height`` from the top left."""
        self.send("Input.dispatchMouseEvent", type="mouseMoved", x=0, y=0)  # no hover effects
        time.sleep(0.5)
        data = base64.b64decode(self.send("Page.captureScreenshot", format="png")["data"])
        save_png(Image.open(io.BytesIO(data)), path, width, height)

    def close(self) -> None:
        """Close the browser and remove its profile."""
        with contextlib.suppress(ScreenshotError, OSError):
            self.send("Browser.close", timeout=10)
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        for descriptor in (self._to_browser, self._from_browser):
            with contextlib.suppress(OSError):
                os.close(descriptor)
        shutil.rmtree(self.profile, ignore_errors=True)


def save_png(image: Image.Image, path: Path, width: int | None, height: int | None) -> None:
    """Crop ``image`` and save it small: as is when under the size budget, else 256 colours."""
    image = image.convert("RGB")
    image = image.crop((0, 0, width or image.width, height or image.height))
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, optimize=True)
    if path.stat().st_size > MAX_PNG_BYTES:
        image.quantize(colors=256, method=Image.Quantize.MEDIANCUT).save(path, optimize=True)
    logger.info("wrote %s (%dx%d, %d kB)", path, *image.size, path.stat().st_size // 1000)


@contextlib.contextmanager
def serve(command: list[str], cwd: Path, ready_url: str, log: Path) -> Iterator[None]:
    """Run a local web server for the duration of the block, stopping it (and its children)."""
    env = KedroProject.env(MLFLOW_SERVER_ENABLE_JOB_EXECUTION="false")
    with log.open("ab") as log_file:
        process = subprocess.Popen(
            command,
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: the workers stop with it
        )
    try:
        deadline = time.monotonic() + 180
        while True:
            if process.poll() is not None:
                tail = log.read_text(errors="replace")[-3000:]
                raise ScreenshotError(f"{' '.join(command[:3])} exited:\n{tail}")
            try:
                with urllib.request.urlopen(ready_url, timeout=2) as response:
                    if response.status == 200:
                        break
            except (urllib.error.URLError, OSError):
                pass
            if time.monotonic() > deadline:
                raise ScreenshotError(f"{ready_url} did not answer within 180 s (log: {log})")
            time.sleep(0.5)
        yield
    finally:
        stop_process_group(process)


def stop_process_group(process: subprocess.Popen[bytes]) -> None:
    """Stop a server started in its own session, and every worker it started."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=30)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        try:
            os.killpg(process.pid, 0)  # is anyone of the group left?
        except ProcessLookupError:
            break
        time.sleep(0.5)
    else:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
    process.wait()


def train_models(project: KedroProject) -> None:
    """Train one model per kind in ``project``, as a user would."""
    for kind in MODEL_KINDS:
        started = time.monotonic()
        logger.info("kedro run --pipeline=train --params=model.kind=%s ...", kind)
        result = project.run(f"--params=model.kind={kind}")
        if result.returncode != 0:
            raise ScreenshotError(f"training model.kind={kind} failed:\n{output_of(result)}")
        logger.info("  done in %.0f s", time.monotonic() - started)


def find_runs(root: Path) -> tuple[str, dict[str, str]]:
    """The ``aeops`` experiment's id and the latest run id of each model kind in ``root``."""
    uri = f"sqlite:///{root / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    experiment = client.get_experiment_by_name("aeops")
    if experiment is None:
        raise ScreenshotError(f"no 'aeops' experiment in {root / 'mlflow.db'}")
    runs = client.search_runs([experiment.experiment_id], order_by=["attributes.start_time ASC"])
    run_ids = {run.data.params.get("model.kind"): run.info.run_id for run in runs}
    missing = [kind for kind in MODEL_KINDS if kind not in run_ids]
    if missing:
        raise ScreenshotError(f"no train run for model.kind={', '.join(missing)} in {root}")
    return experiment.experiment_id, run_ids


def shoot_compare_runs(
    browser: Chromium, base: str, experiment_id: str, run_ids: dict[str, str], path: Path
) -> None:
    """The compare-runs page: a parallel-coordinates plot and the differing params and metrics."""
    runs = json.dumps([run_ids[kind] for kind in MODEL_KINDS], separators=(",", ":"))
    experiments = json.dumps([experiment_id])
    browser.resize(1400, 1250)
    browser.open(
        f"{base}/#/compare-runs?runs={runs}&experiments={experiments}"
        "&workflowType=machine_learning",
        "(document.body?.innerText || '').includes('Run details')"
        " && document.querySelector('.du-bois-light-select')",
        "the compare-runs page",
    )
    # The plot's metric picker: drop the default (train_loss) and pick the test metrics.
    picker = "document.querySelectorAll('.du-bois-light-select')[1]"
    browser.click(
        f"{picker}.querySelector('.du-bois-light-select-selection-item-remove')",
        "the plot's default metric",
    )
    for metric in COMPARED_METRICS:
        browser.click(f"{picker}.querySelector('.du-bois-light-select-selector')", "metric picker")
        browser.type_text(metric)
        browser.click(
            "Array.from(document.querySelectorAll('.du-bois-light-select-item-option'))"
            f".find(o => o.getAttribute('title') === '{metric}')",
            f"the option {metric} in the plot's metric picker",
        )
    browser.press_escape()
    browser.click("__byText('Run details')", "the 'Run details' section header")  # fold it
    for section in ("Parameters", "Metrics"):
        browser.click(
            f"document.querySelector('[aria-label=\"{section} - Show diff only\"]')",
            f"the {section} 'Show diff only' switch",
        )
    browser.js("__byText('Comparing 3 Runs from 1 Experiment').scrollIntoView({block: 'end'})")
    browser.wait_for(
        f"document.querySelector('.js-plotly-plot .parcoords')?.textContent.includes("
        f"'{COMPARED_METRICS[-1]}')",
        "the parallel-coordinates plot",
    )
    browser.screenshot(path)


def shoot_runs_table(browser: Chromium, base: str, experiment_id: str, path: Path) -> None:
    """The experiment's runs table with the model kind and test metrics as columns."""
    browser.resize(1400, 900)
    browser.open(
        f"{base}/#/experiments/{experiment_id}/runs?workflowType=machine_learning",
        "(document.body?.innerText || '').includes('matching runs')",
        "the experiment's runs table",
    )
    browser.click("__byText('Columns')", "the 'Columns' button")
    for column in RUNS_TABLE_TOGGLED_COLUMNS:
        browser.click(
            "document.querySelector('input[placeholder=\"Search columns\"]')", "column search"
        )
        browser.js(
            "(() => { const i = document.querySelector('input[placeholder=\"Search columns\"]');"
            " i.select(); })()"
        )
        browser.type_text(column)
        picker = "document.querySelector('[data-component-id$=\"column_selector\"]')"
        while browser.js(f"!!{picker}.querySelector('.du-bois-light-tree-switcher_close')"):
            browser.click(
                f"{picker}.querySelector('.du-bois-light-tree-switcher_close')", "a column group"
            )
        browser.click(
            f"Array.from({picker}.querySelectorAll('.du-bois-light-tree-title'))"
            f".find(t => t.innerText.trim() === '{column}')",
            f"the column {column} in the column picker",
        )
    browser.press_escape()
    browser.wait_for(
        "Array.from(document.querySelectorAll('[role=columnheader]'))"
        ".some(h => h.innerText.includes('test_auroc'))",
        "the test_auroc column",
    )
    browser.screenshot(path, height=380)


def shoot_registry(browser: Chromium, base: str, path: Path) -> None:
    """The registered models list, its aliased versions opened: champion and challenger."""
    browser.resize(1400, 900)
    browser.open(
        f"{base}/#/models?workflowType=machine_learning",
        "(document.body?.innerText || '').includes('Aliased versions')",
        "the registered models list",
    )
    with contextlib.suppress(ScreenshotError):  # a one-off "new registry UI" pop-up
        browser.click(
            "document.querySelector('.du-bois-light-modal-close')",
            "the pop-up's close button",
            timeout=5,
        )
    # The cell shows one alias and "+1"; open it to show both.
    browser.click(
        "Array.from(document.querySelectorAll('button'))"
        ".find(b => /^\\+\\d+$/.test(b.innerText.trim()))",
        "the aliased versions' '+1'",
    )
    browser.wait_for("(document.body?.innerText || '').includes('champion')", "the aliases")
    browser.screenshot(path, height=270)


def shoot_kedro_viz(browser: Chromium, base: str, path: Path) -> None:
    """kedro-viz's flowchart of the ``train`` pipeline."""
    browser.resize(1400, 1500)
    browser.open(
        f"{base}/?pid=train",
        "document.querySelectorAll('.pipeline-node').length > 10",
        "the kedro-viz flowchart",
    )
    time.sleep(2)  # the layout animates into place
    with contextlib.suppress(ScreenshotError):  # offline, it announces the release "None"
        browser.click(
            "Array.from(document.querySelectorAll('button, a'))"
            ".find(b => b.innerText.trim() === 'Dismiss')",
            "the update reminder's 'Dismiss'",
            timeout=5,
        )
    browser.screenshot(path)


def free_registered_port(first: int = 4141) -> int:
    """A free TCP port on 127.0.0.1 from ``first`` up, below the ephemeral range."""
    for port in range(first, 49152):
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise ScreenshotError(f"no free TCP port between {first} and 49151")


def find_chromium(given: str | None) -> str:
    """The Chromium to use: ``--chromium``, else the first one on PATH; exit if none."""
    if given:
        found = shutil.which(given)
        if found is None:
            sys.exit(f"--chromium {given!r} is not an executable file")
        return found
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        found = shutil.which(name)
        if found:
            return found
    sys.exit(
        "No Chromium found: install one (Debian/Ubuntu: `apt-get install chromium`) "
        "or pass --chromium /path/to/chromium."
    )


def shoot_mlflow_ui(browser: Chromium, root: Path, out: Path, logs: Path) -> None:
    """Serve ``root``'s MLflow store with ``mlflow ui`` and shoot its three pages."""
    experiment_id, run_ids = find_runs(root)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    command = [str(Path(sys.executable).with_name("mlflow")), "ui", "--workers", "1"]
    command += ["--backend-store-uri", "sqlite:///mlflow.db"]
    command += ["--host", "127.0.0.1", "--port", str(port)]
    logger.info("mlflow ui on %s", base)
    with serve(command, root, f"{base}/health", logs / "mlflow-ui.log"):
        shoot_compare_runs(browser, base, experiment_id, run_ids, out / "mlflow_compare_runs.png")
        shoot_runs_table(browser, base, experiment_id, out / "mlflow_runs_table.png")
        shoot_registry(browser, base, out / "mlflow_registry_aliases.png")


def shoot_kedro_viz_if_installed(browser: Chromium, root: Path, out: Path, logs: Path) -> None:
    """Serve ``kedro viz run`` in ``root`` and shoot it, when kedro-viz is installed."""
    if importlib.util.find_spec("kedro_viz") is None:
        logger.warning(
            "kedro-viz is not installed in this environment: skipped kedro_viz_train.png "
            '(pip install -e ".[viz]", then rerun)'
        )
        return
    settings = json.dumps(json.dumps(KEDRO_VIZ_SETTINGS))
    browser.before_each_page(f"localStorage.setItem('KedroViz', {settings});")
    port = free_registered_port()  # kedro-viz refuses ports above 49151
    base = f"http://127.0.0.1:{port}"
    command = [str(Path(sys.executable).with_name("kedro")), "viz", "run", "--no-browser"]
    command += ["--host", "127.0.0.1", "--port", str(port)]
    logger.info("kedro viz run on %s", base)
    with serve(command, root, f"{base}/api/main", logs / "kedro-viz.log"):
        shoot_kedro_viz(browser, base, out / "kedro_viz_train.png")


def main(argv: list[str] | None = None) -> None:
    """Parse the arguments, train the runs, serve the UIs and take the screenshots."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--chromium", help="Chromium executable (default: chromium on PATH)")
    parser.add_argument("--out", type=Path, default=DOCS / "images", help="where PNGs go")
    parser.add_argument("--keep", action="store_true", help="keep the project copy and logs")
    parser.add_argument(
        "--reuse",
        type=Path,
        metavar="DIR",
        help="a project copy kept by an earlier --keep: skip training, shoot its runs",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    chromium = find_chromium(args.chromium)
    out: Path = args.out.resolve()
    started = time.monotonic()

    workdir = Path(tempfile.mkdtemp(prefix="aeops-screenshots-"))
    root = args.reuse.resolve() if args.reuse else workdir / "aeops"
    try:
        if not args.reuse:
            train_models(KedroProject(root))
        browser = Chromium(chromium, 1400, 900)
        try:
            browser.before_each_page(BY_TEXT_JS + MLFLOW_QUIET_JS)
            shoot_mlflow_ui(browser, root, out, logs=workdir)
            shoot_kedro_viz_if_installed(browser, root, out, logs=workdir)
        finally:
            browser.close()
    except ScreenshotError as error:
        sys.exit(f"screenshots failed: {error}")
    finally:
        if args.keep:
            logger.info("kept the project copy in %s and server logs in %s", root, workdir)
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    logger.info("all done in %.0f s", time.monotonic() - started)


if __name__ == "__main__":
    main()
