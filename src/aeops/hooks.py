"""Kedro hooks of the project (glue only; the work is in ``aeops.serving`` and the
pipelines' own modules)."""

from __future__ import annotations

import atexit
import difflib
import logging
import os
import re
import shlex
import signal
import subprocess
import sys
import threading
from pathlib import Path
from types import FrameType
from typing import Any

from kedro.config import MissingConfigException
from kedro.framework.hooks import hook_impl

from aeops._errors import is_refusal


class BriefRefusals:
    """An error aeops raises on purpose ends ``kedro run`` with its message alone.

    Bad input, a refused parameter, a model that cannot do what was asked: each is
    raised as one of aeops's own exception types, with a message that names the
    problem. Kedro printed Python's traceback above it, some hundred lines of Kedro's
    and click's frames. Before anything else runs (``tryfirst``), this hook wraps the
    process's exception hook so that such an error prints ``Error: <message>`` to
    stderr (the exit status stays 1). Any other exception, a bug or an environment
    problem, keeps its traceback, and ``AEOPS_TRACEBACK=1`` keeps every traceback.
    """

    @hook_impl(tryfirst=True)
    def after_context_created(self, context: Any) -> None:
        """Wrap ``sys.excepthook`` (Kedro's rich one by now), once per process."""
        if os.environ.get("AEOPS_TRACEBACK", "").strip().lower() not in _OFF:
            return
        if not getattr(sys.excepthook, "aeops_brief", False):
            sys.excepthook = brief_refusals(sys.excepthook)


# AEOPS_TRACEBACK values that leave tracebacks off.
_OFF = {"", "0", "false", "no", "off"}


def brief_refusals(previous: Any) -> Any:
    """An exception hook that prints an aeops refusal's message and hands every other
    exception to ``previous``."""

    def excepthook(kind: type[BaseException], error: BaseException, traceback: Any) -> None:
        if not is_refusal(error):
            previous(kind, error, traceback)
            return
        import click

        if sys.stderr.isatty():  # clear a progress line left unfinished (Spark's stage bar)
            click.echo("\r\x1b[K", nl=False, err=True)
        click.secho(f"Error: {error}", fg="red", err=True)
        click.secho("(AEOPS_TRACEBACK=1 shows where it was raised.)", dim=True, err=True)

    excepthook.aeops_brief = True  # type: ignore[attr-defined]
    return excepthook


class TrackingStoreCheck:
    """Before kedro-mlflow's own set-up (``tryfirst``): stop a run at once when its
    tracking server does not answer (MLflow would retry it for minutes), and create a
    SQLite store under a lock, so runs that start together do not race on its schema.
    """

    @hook_impl(tryfirst=True)
    def after_context_created(self, context: Any) -> None:
        """Read the tracking URI from ``mlflow.yml`` (env vars resolved) and prepare it."""
        loader = context.config_loader
        loader.config_patterns.setdefault("mlflow", ["mlflow*", "mlflow*/**"])
        try:
            config = loader["mlflow"]
        except (KeyError, MissingConfigException):  # no mlflow.yml: a local store
            return
        uri = config.get("server", {}).get("mlflow_tracking_uri")
        experiment = config.get("tracking", {}).get("experiment", {})
        if not uri:
            return
        from aeops.serving import prepare_tracking_store  # mlflow: only for runs

        # With creation options set, kedro-mlflow creates the experiment itself.
        custom = any((experiment.get("create_experiment_kwargs") or {}).values())
        prepare_tracking_store(
            str(uri),
            experiment_name=None if custom else experiment.get("name"),
            project_path=Path(context.project_path),
        )


class RefuseUnknownParameters:
    """Stop a run whose ``--params`` name a misspelled parameter block.

    Each block is checked key by key where it is parsed, but a misspelled block
    (``evalaute.model_uri=...``) was silently merged in beside the real one, and the
    run went on with the defaults it meant to override. A key that no parameter file
    defines and that is close to a block's name is refused; any other is let through,
    since the catalog may read it (``${runtime_params:out_dir}``).
    """

    @hook_impl
    def after_context_created(self, context: Any) -> None:
        """Compare the runtime parameters' top-level keys with the files' blocks."""
        loader = context.config_loader
        runtime = dict(getattr(loader, "runtime_params", None) or {})
        if not runtime:
            return
        loader.runtime_params = {}
        try:
            defined = list(loader["parameters"])
        except Exception:  # a file that needs the runtime params: Kedro will say so
            return
        finally:
            loader.runtime_params = runtime
        misspelled = {
            name: close[0]
            for name in sorted(set(runtime) - set(defined))
            for close in [difflib.get_close_matches(name, defined, n=1, cutoff=0.75)]
            if close
        }
        if misspelled:
            from aeops.pipelines._params import ParameterError

            names = ", ".join(f"{k!r} (did you mean {v!r}?)" for k, v in misspelled.items())
            raise ParameterError(
                f"--params names {names}, which no parameter file defines; "
                f"the blocks are: {', '.join(sorted(defined))}"
            )


class CheckParametersFirst:
    """Before any node runs, and before kedro-mlflow opens a run (``tryfirst``):
    validate every parameter block the pipeline's nodes take. Each node parses its
    blocks again where it uses them; checked here too, a bad ``registry.model_name``
    stops the run before the training it would have come after, with no outputs
    written and no MLflow run left FAILED."""

    @hook_impl(tryfirst=True)
    def before_pipeline_run(self, run_params: dict[str, Any], pipeline: Any, catalog: Any) -> None:
        """Parse each ``params:<block>`` input with its block's schema, then the rules
        that tie blocks together."""
        from aeops.pipelines._params import check_together, parameter_blocks, parse_params

        schemas, parsed = parameter_blocks(), {}
        for name in sorted(pipeline.inputs()):
            area = name.removeprefix("params:")
            schema = schemas.get(area) if name.startswith("params:") else None
            if schema is not None:
                parsed[area] = parse_params(schema, catalog.load(name), area)
        check_together(parsed)


class DescribeRun:
    """After kedro-mlflow has started the run (``trylast``): name it after the model it
    trains, and tag the code and command it ran.

    kedro-mlflow names every run after its pipeline, so the runs table listed a column
    of ``train``. A pipeline that takes the ``model`` block gets ``<pipeline>-<kind>``
    (``train-vae``), unless ``tracking.run.name`` is set or a sweep's trials choose
    the kind; the run of a pipeline that uses a registered model (a batch job,
    evaluate, generate, impute) gets that model (``score-aeops-demo-v3``) once the
    pipeline has tagged it. MLflow records the git commit only for a script inside the
    repository, which ``kedro`` is not: the project's commit is tagged
    ``mlflow.source.git.commit`` (the UI's "Git commit"), with ``git_dirty`` when
    tracked files have changed or ``src``/``conf`` hold new ones.
    ``kedro_command`` (kedro-mlflow's, without ``--env`` or ``--params``) becomes the
    command line as typed (``kedro``, ``python -m kedro`` or ``python -m aeops``).
    """

    def __init__(self) -> None:
        self._project_path = Path.cwd()
        self._named_in_config = False
        self._name_after_its_model: tuple[str, str] | None = None  # (run id, name)

    @hook_impl
    def after_context_created(self, context: Any) -> None:
        """Remember the project folder and whether ``mlflow.yml`` names the run."""
        self._project_path = Path(context.project_path)
        try:
            run = context.config_loader["mlflow"].get("tracking", {}).get("run", {})
        except (KeyError, MissingConfigException):
            run = {}
        self._named_in_config = bool((run or {}).get("name"))

    @hook_impl(trylast=True)
    def before_pipeline_run(self, run_params: dict[str, Any], pipeline: Any, catalog: Any) -> None:
        """Name and tag kedro-mlflow's run, if there is one."""
        mlflow = sys.modules.get("mlflow")
        run = None if mlflow is None else mlflow.active_run()
        if mlflow is None or run is None:
            return
        tags = _git_tags(self._project_path)
        launcher = Path(sys.argv[0])
        if launcher.name == "kedro" or launcher.parts[-2:] == ("kedro", "__main__.py"):
            tags["kedro_command"] = shlex.join(["kedro", *sys.argv[1:]])
        elif launcher.parts[-2:] == ("aeops", "__main__.py"):
            tags["kedro_command"] = shlex.join(["python", "-m", "aeops", *sys.argv[1:]])
        # kedro-mlflow tags the runner object's repr (<...SequentialRunner object at 0x..>).
        if runner := re.fullmatch(
            r"<([\w.]+) object at 0x[0-9a-fA-F]+>", run_params.get("runner", "")
        ):
            tags["runner"] = runner[1].rsplit(".", 1)[-1]
        mlflow.set_tags(tags)
        names = run_params.get("pipeline_names") or [run_params.get("pipeline_name")]
        kedro_mlflow_name = "+".join(name or "__default__" for name in names)
        self._name_after_its_model = None
        if self._named_in_config or run.info.run_name != kedro_mlflow_name:
            return  # named in mlflow.yml, or an existing run continued
        # A plain `kedro run` runs __default__, which is train: its runs are train's.
        shown = "+".join("train" if name in (None, "__default__") else name for name in names)
        if "params:model" not in pipeline.inputs():
            # The model a batch job, evaluate, generate or impute uses is known once
            # it has loaded (see after_pipeline_run and on_pipeline_error).
            self._name_after_its_model = (run.info.run_id, shown)
            return
        if "params:sweep" in pipeline.inputs():
            space = (catalog.load("params:sweep") or {}).get("space") or {}
            if "model.kind" in space:
                return  # the trials choose the kind
        kind = (catalog.load("params:model") or {}).get("kind", "vanilla")
        name = f"{shown}-{kind}"
        mlflow.MlflowClient().update_run(run.info.run_id, name=name)
        logging.getLogger(__name__).info("MLflow run %s is named %r", run.info.run_id, name)

    @hook_impl(tryfirst=True)
    def after_pipeline_run(self, run_params: dict[str, Any], pipeline: Any, catalog: Any) -> None:
        """Before kedro-mlflow ends the run: name the run of a pipeline that used a
        registered model after it (``score-aeops-demo-v3``), from the tags it set."""
        self._name_after_the_model_used()

    @hook_impl(tryfirst=True)
    def on_pipeline_error(
        self, error: Exception, run_params: dict[str, Any], pipeline: Any, catalog: Any
    ) -> None:
        """A failed run is named after the model it loaded too, so that it sits beside
        that model's other runs; one that failed before loading keeps its pipeline's."""
        self._name_after_the_model_used()

    def _name_after_the_model_used(self) -> None:
        pending, self._name_after_its_model = self._name_after_its_model, None
        mlflow = sys.modules.get("mlflow")
        if pending is None or mlflow is None:
            return
        from aeops._env import environment_defaults
        from aeops.io._batch_jobs import job_run_name
        from aeops.serving._registry import REQUESTS_NOT_RETRIED

        run_id, pipeline = pending
        # Not retried: a run may have failed because its tracking server went away.
        try:
            with environment_defaults(REQUESTS_NOT_RETRIED):
                client = mlflow.MlflowClient()
                name = job_run_name(pipeline, client.get_run(run_id).data.tags)
                if name != pipeline:
                    client.update_run(run_id, name=name)
        except Exception as error:  # only the name is missing; never mask the pipeline's
            logging.getLogger(__name__).warning("Could not rename run %s: %s", run_id, error)


def _git_tags(folder: Path) -> dict[str, str]:
    """The commit checked out in ``folder`` and whether the code differs from it
    (tracked files changed, new files under ``src`` or ``conf``); none when git is
    missing or the project is not tracked (a folder inside another repository)."""

    def git(*args: str) -> str:
        done = subprocess.run(
            ["git", "--no-optional-locks", *args],
            cwd=folder,
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        )
        return done.stdout.strip()

    try:
        git("ls-files", "--error-unmatch", "pyproject.toml")  # the project is in this tree
        commit = git("rev-parse", "HEAD")
        changed = git("status", "--porcelain", "--untracked-files=no") or git(
            "status", "--porcelain", "--", "src", "conf"
        )
    except (OSError, subprocess.SubprocessError):
        return {}
    return {"mlflow.source.git.commit": commit, "git_dirty": str(bool(changed)).lower()}


class KeepUnloggedModel:
    """When a run fails because its tracking server went away, keep the trained model
    on disk with instructions to register it later (see
    :mod:`aeops.pipelines.train.recovery`). Runs before kedro-mlflow closes the run."""

    def __init__(self) -> None:
        self._project_path = Path.cwd()

    @hook_impl
    def after_context_created(self, context: Any) -> None:
        """Remember the project folder, where the model is kept."""
        self._project_path = Path(context.project_path)

    @hook_impl(tryfirst=True)
    def on_pipeline_error(
        self, error: Exception, run_params: dict[str, Any], pipeline: Any, catalog: Any
    ) -> None:
        """Keep the model when the tracking server is gone; never mask ``error``."""
        from aeops.pipelines.train.recovery import keep_unlogged_model

        try:
            keep_unlogged_model(catalog, self._project_path)
        except Exception:  # the run's own error is the one to report
            logging.getLogger(__name__).exception("Could not keep the trained model")


class CloseInterruptedRun:
    """A run stopped by Ctrl-C or SIGTERM is recorded as ``KILLED``.

    Kedro calls ``on_pipeline_error`` for exceptions only. On Ctrl-C, MLflow's own exit
    handler then closed the run as ``FINISHED``; on SIGTERM (a scheduler, ``docker
    stop``), nothing closed it and it stayed ``RUNNING``. While a pipeline runs, this
    hook knows its MLflow run:

    - SIGTERM marks it ``KILLED`` (waiting at most ``_SIGTERM_GRACE`` seconds for the
      store), then ends the process by the signal, as it would have ended anyway:
      running nodes, threads of a ``ThreadRunner`` included, get no time to finish;
    - an exit handler, registered after MLflow's and so run before it, ends it as
      ``KILLED`` when the process exits mid-pipeline (Ctrl-C).

    Only that run is touched, and only between the pipeline's start and its end or
    failure, which the hook sees before kedro-mlflow (``tryfirst``), so a run that a
    dead tracking server failed is not retried at exit.
    """

    def __init__(self) -> None:
        self._run_id: str | None = None
        self._exit_handler_set = False
        self._previous_sigterm: Any = None

    @hook_impl(trylast=True)
    def before_pipeline_run(self, run_params: dict[str, Any], pipeline: Any, catalog: Any) -> None:
        """After kedro-mlflow has started the run: watch it until the pipeline ends."""
        mlflow = sys.modules.get("mlflow")
        run = None if mlflow is None else mlflow.active_run()
        self._run_id = None if run is None else run.info.run_id
        if self._run_id is None:
            return
        if not self._exit_handler_set:
            atexit.register(self._end_run_as_killed)
            self._exit_handler_set = True
        in_main_thread = threading.current_thread() is threading.main_thread()
        if in_main_thread and signal.getsignal(signal.SIGTERM) == signal.SIG_DFL:
            self._previous_sigterm = signal.signal(signal.SIGTERM, self._on_sigterm)

    @hook_impl(tryfirst=True)
    def after_pipeline_run(self, run_params: dict[str, Any], pipeline: Any, catalog: Any) -> None:
        """The pipeline ended: kedro-mlflow closes its run."""
        self._stop_watching()

    @hook_impl(tryfirst=True)
    def on_pipeline_error(
        self, error: Exception, run_params: dict[str, Any], pipeline: Any, catalog: Any
    ) -> None:
        """The pipeline failed: kedro-mlflow closes its run as ``FAILED``, with a log
        line each time the run is on MLflow's stack (once per node run); one is kept."""
        self._stop_watching()
        logger = logging.getLogger("kedro_mlflow.framework.hooks.mlflow_hook")
        if not any(isinstance(f, _OneLinePerClosedRun) for f in logger.filters):
            logger.addFilter(_OneLinePerClosedRun())

    def _stop_watching(self) -> None:
        self._run_id = None
        if self._previous_sigterm is not None:
            signal.signal(signal.SIGTERM, self._previous_sigterm)
            self._previous_sigterm = None

    def _on_sigterm(self, signum: int, frame: FrameType | None) -> None:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a second one waits its turn
        # In a thread, so a store that does not answer (or a lock the interrupted
        # code holds) cannot keep the process from ending.
        marker = threading.Thread(target=self._end_run_as_killed, daemon=True)
        marker.start()
        marker.join(_SIGTERM_GRACE)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGTERM)

    def _end_run_as_killed(self) -> None:
        run_id, self._run_id = self._run_id, None
        mlflow = sys.modules.get("mlflow")
        if run_id is None or mlflow is None:
            return
        try:
            # kedro-mlflow puts its run on MLflow's stack again for every node, and
            # MLflow's exit handler would end what is left of it as FINISHED.
            for _ in range(_MOST_STACKED_RUNS):
                run = mlflow.active_run()
                if run is None or run.info.run_id != run_id:
                    break
                mlflow.end_run(status="KILLED")
            if mlflow.MlflowClient().get_run(run_id).info.status == "RUNNING":
                mlflow.MlflowClient().set_terminated(run_id, "KILLED")  # off the stack
        except Exception as error:  # at exit: say so, never raise
            logging.getLogger(__name__).warning("Could not mark run %s KILLED: %s", run_id, error)


class _OneLinePerClosedRun(logging.Filter):
    """Lets through the first of kedro-mlflow's identical "closed because of an error"
    lines about a run."""

    def __init__(self) -> None:
        super().__init__()
        self._said: set[str] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if "was closed because of an error" not in message:
            return True
        if message in self._said:
            return False
        self._said.add(message)
        return True


# Seconds SIGTERM waits for the run to be marked KILLED before the process ends.
_SIGTERM_GRACE = 5.0
# How many times the run may be on MLflow's stack: once, and once more per node run.
_MOST_STACKED_RUNS = 10_000
