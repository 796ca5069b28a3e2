"""Logging the bundle to the active MLflow run, registering it, and the alias policy."""

from __future__ import annotations

import contextlib
import difflib
import hashlib
import logging
import math
import shutil
import signal
import tempfile
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from importlib.metadata import version
from pathlib import Path
from types import FrameType
from typing import Any

import mlflow
import numpy as np
import pandas as pd
from mlflow.exceptions import MlflowException
from mlflow.models import ModelSignature, infer_signature
from mlflow.tracking import MlflowClient
from mlflow.types.schema import AnyType, ColSpec, Schema, TensorSpec
from pydantic import BaseModel, ConfigDict, field_validator, model_validator

import aeops
from aeops._env import environment_defaults
from aeops.bundle import BundleSpec, LoadedBundle, write_bundle
from aeops.scoring import SPLIT_METRICS, InputSchemaError, Predictor
from aeops.serving._loading import (
    REGISTRATION_COMPLETE,
    ModelNotFoundError,
    NotABundleError,
    load_registered_bundle,
)
from aeops.serving._locks import store_lock
from aeops.serving._pyfunc import predict_frame

logger = logging.getLogger(__name__)

CHAMPION = "champion"
CHALLENGER = "challenger"
_MAX_ALIAS_ROUNDS = 4
EVALUATION_DIGEST = "evaluation_digest"
# The row hashes (aeops.scoring.evaluation.row_hashes) of what a version was fitted and
# tuned on: a run artifact beside the model, not in it, so serving never ships them.
TRAINING_ROWS_ARTIFACT = "registry/training_rows.npy"
_BUNDLE_REQUIREMENTS = ("torch", "numpy", "pandas", "pyarrow", "pydantic", "scikit-learn")


class RegistryConfig(BaseModel):
    """The ``registry`` block."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    model_name: str = "aeops"
    compare_metric: str = "test_auroc"
    greater_is_better: bool = True

    @field_validator("model_name")
    @classmethod
    def _quotable(cls, value: str) -> str:
        # MLflow's search filters quote the name, and cannot escape a quote in it; its
        # registry refuses '/' and ':', and '@' starts an alias in a model URI
        # (models:/name@champion), so a name holding one registers but never loads.
        if not value.strip() or any(mark in value for mark in "'\"/:@"):
            raise ValueError(
                f"registry.model_name={value!r} must be non-empty and hold no quotes, "
                "'/', ':' or '@'"
            )
        return value

    @field_validator("compare_metric")
    @classmethod
    def _a_test_metric(cls, value: str) -> str:
        # The champion is scored again on the new version's test rows, on this metric.
        known = [f"test_{name}" for name in SPLIT_METRICS]
        if value not in known:
            close = difflib.get_close_matches(value, known, n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            raise ValueError(
                f"registry.compare_metric={value!r} is not a test metric; {hint}"
                f"choose one of: {', '.join(known)}"
            )
        return value

    @model_validator(mode="after")
    def _lower_errors_are_better(self) -> RegistryConfig:
        if self.compare_metric == "test_error_mean" and self.greater_is_better:
            raise ValueError(
                "registry.compare_metric=test_error_mean is better when lower: with "
                "registry.greater_is_better=true the version that reconstructs the same "
                "rows worse would become champion; set registry.greater_is_better=false"
            )
        return self


@dataclass(frozen=True)
class ChampionComparison:
    """The champion and the new version scored on the same rows of the new test split.

    Attributes:
        champion: the champion's metrics on those rows.
        version: the new version's metrics on the same rows.
        rows: how many rows they were taken over.
        excluded: test rows left out because a model was trained on them; None when
            the champion's run did not record its training rows.
    """

    champion: dict[str, float]
    version: dict[str, float]
    rows: int
    excluded: int | None


# Scores a champion bundle (with the row hashes of what it trained on, when its run
# recorded them) against the new version; None when the champion trained on every
# test row.
Compare = Callable[[LoadedBundle, np.ndarray | None], ChampionComparison | None]


def compare_on_unseen_rows(
    version: Predictor,
    version_spec: BundleSpec,
    frame: pd.DataFrame,
    label_column: str | None,
    fitted_on: np.ndarray | None,
) -> Compare:
    """A :data:`Compare` that scores the champion and ``version`` on the rows of
    ``frame`` (the version's test split) that neither was trained on.

    Both get every metric the version logs, so any ``compare_metric`` finds its value.
    ``fitted_on`` holds the row hashes of what ``version`` was fitted and tuned on: a
    test row can repeat one of them exactly, and is then left out too.
    """
    # Here, not at the top: evaluation draws plots (matplotlib), which a served model,
    # importing this package, neither needs nor lists in its requirements.
    from aeops.scoring.evaluation import row_hashes, score_metrics

    own_rows = np.empty(0, np.uint64) if fitted_on is None else fitted_on

    def compare(champion: LoadedBundle, trained_on: np.ndarray | None) -> ChampionComparison | None:
        # Hashing reads the champion's inputs first: another schema fails here.
        hashes = row_hashes(champion.predictor, frame, champion.spec.timestamp_column)
        seen = np.zeros(len(frame), bool) if trained_on is None else np.isin(hashes, trained_on)
        seen |= np.isin(row_hashes(version, frame, version_spec.timestamp_column), own_rows)
        if seen.all():
            return None
        return ChampionComparison(
            champion=score_metrics(champion.predictor, frame, label_column, "test", ~seen),
            version=score_metrics(version, frame, label_column, "test", ~seen),
            rows=int((~seen).sum()),
            excluded=None if trained_on is None else int(seen.sum()),
        )

    return compare


# Comparisons that could not be made fairly: the champion stays.
_KEEPS_THE_CHAMPION = frozenset({"no_unseen_rows", "undefined_on_compared_rows"})


@dataclass(frozen=True)
class _Outcome:
    """How the new version fared against the champion, and what to tag it with."""

    how: str
    champion_value: float | None = None
    version_value: float | None = None
    tags: dict[str, str] | None = None


@dataclass(frozen=True)
class Registration:
    """Where a trained bundle ended up."""

    model_name: str
    version: str
    alias: str
    run_id: str
    model_uri: str
    compare_metric: str
    metric_value: float | None
    champion_before: str | None
    champion_metric_before: float | None
    compared_metric_value: float | None = None
    """This version's metric on the rows it was compared with the champion on (its
    own ``metric_value`` unless the champion was re-scored on part of its test split)."""

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return asdict(self)


def frame_digest(frame: pd.DataFrame) -> str:
    """A short content digest of a frame (values, columns and order).

    Columns of arrays (images) are hashed by their bytes, since pandas cannot hash them.
    """
    hashable = frame.copy()
    for column in hashable.columns:
        cells = hashable[column]
        if cells.dtype == object and len(cells) and isinstance(cells.iloc[0], np.ndarray):
            hashable[column] = [np.ascontiguousarray(v).tobytes() for v in cells]
    hashed = pd.util.hash_pandas_object(hashable, index=False).to_numpy()
    digest = hashlib.sha256(hashed.tobytes())
    digest.update("\x1f".join(map(str, frame.columns)).encode())
    return digest.hexdigest()[:16]


def _requirement(distribution: str) -> str:
    major, minor = version(distribution).split("+")[0].split(".")[:2]
    return f"{distribution}=={major}.{minor}.*"


def _signature(
    predictor: Predictor, spec: BundleSpec, example: pd.DataFrame, optional: set[str]
) -> ModelSignature:
    """Input: the columns of ``example``, ``optional`` ones not required; output: ``all``.

    Every input column takes any type. MLflow would refuse int64 for a double column
    ("cannot safely convert"), text ids for the example's integer ids, an image shaped
    (C, H, W) or (H, W) for the flat array of the example, and a timestamp given as
    text, where the model itself accepts all of them: the id is only carried through,
    and the model checks its features' types, values and image sizes itself, naming
    the column, as the batch jobs do.
    """
    output = predict_frame(predictor, example, spec.id_column)
    with warnings.catch_warnings():  # its hint about integer columns: they take any type
        warnings.filterwarnings("ignore", "Hint: Inferred schema contains integer", UserWarning)
        inferred = infer_signature(example, output, params={"output": "all"})
    inputs: list[ColSpec | TensorSpec] = [
        ColSpec(AnyType(), col.name, required=col.name not in optional)
        for col in inferred.inputs.inputs
    ]
    return ModelSignature(inputs=Schema(inputs), outputs=inferred.outputs, params=inferred.params)


def _copy_package(destination: Path) -> Path:
    """Copy the aeops package without caches, to ship as the bundle's code."""
    source = Path(aeops.__file__).parent
    target = destination / "aeops"
    shutil.copytree(source, target, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    return target


def log_bundle(
    predictor: Predictor,
    spec: BundleSpec,
    input_example: pd.DataFrame,
    optional_columns: set[str] | None = None,
) -> mlflow.models.model.ModelInfo:
    """Log the bundle as a pyfunc model named ``model`` in the active run.

    ``optional_columns`` (the id at least) are in the signature but not required.
    """
    optional = {spec.id_column, *(optional_columns or set())}
    with tempfile.TemporaryDirectory(prefix="aeops-bundle-") as temp:
        bundle_dir = write_bundle(Path(temp) / "bundle", predictor, spec)
        code_dir = _copy_package(Path(temp) / "code")
        return mlflow.pyfunc.log_model(
            name="model",
            python_model=str(Path(__file__).with_name("_model_code.py")),
            artifacts={"bundle": str(bundle_dir)},
            code_paths=[str(code_dir)],
            signature=_signature(predictor, spec, input_example, optional),
            input_example=input_example,
            pip_requirements=[_requirement(d) for d in _BUNDLE_REQUIREMENTS],
        )


def _holder(client: MlflowClient, name: str, alias: str) -> Any | None:
    """The version of ``name`` that holds ``alias``; None when none does."""
    try:
        return client.get_model_version_by_alias(name, alias)
    except MlflowException as error:
        if error.error_code == "RESOURCE_DOES_NOT_EXIST" or "not found" in str(error).lower():
            return None
        raise


def _champion(client: MlflowClient, name: str) -> Any | None:
    return _holder(client, name, CHAMPION)


def _version_of(model_version: Any | None) -> str | None:
    return None if model_version is None else str(model_version.version)


def _beats(new: float | None, old: float | None, greater_is_better: bool) -> bool:
    """Whether ``new`` is better; a missing or NaN value is beaten by any number."""
    if new is None or not math.isfinite(new):
        return False
    if old is None or not math.isfinite(old):
        return True
    return new > old if greater_is_better else new < old


def _training_rows(client: MlflowClient, run_id: str) -> np.ndarray | None:
    """The row hashes a version's run recorded, or None (an older run, or none kept)."""
    folder = TRAINING_ROWS_ARTIFACT.rsplit("/", 1)[0]
    if not any(a.path == TRAINING_ROWS_ARTIFACT for a in client.list_artifacts(run_id, folder)):
        return None
    with tempfile.TemporaryDirectory(prefix="aeops-rows-") as temp:
        path = client.download_artifacts(run_id, TRAINING_ROWS_ARTIFACT, temp)
        rows: np.ndarray = np.load(path, allow_pickle=False)
    return rows


def _compare_with(
    client: MlflowClient,
    champion: Any,
    config: RegistryConfig,
    new_value: float | None,
    evaluation_digest: str | None,
    compare: Compare | None,
) -> _Outcome:
    """Both versions' ``compare_metric`` on the same data, and how it was obtained:
    ``same_data`` (the champion's logged metric, evaluated on the same data),
    ``reevaluated`` (both scored on the test rows neither was trained on),
    ``logged`` when there is nothing to re-score with, ``incomparable`` when the
    champion cannot score this data, ``no_unseen_rows`` when it was trained on all of
    it, ``undefined_on_compared_rows`` when the metric is (one class only, say)."""
    metric = config.compare_metric
    same_data = (
        evaluation_digest is not None and champion.tags.get(EVALUATION_DIGEST) == evaluation_digest
    )
    if same_data or compare is None:
        logged = client.get_run(champion.run_id).data.metrics.get(metric)
        return _Outcome("same_data" if same_data else "logged", logged, new_value)
    uri = f"models:/{config.model_name}/{champion.version}"
    try:
        # Another bundle format is a ValueError. A store that does not answer is no
        # reason to displace the champion: that error fails the run instead.
        bundle = load_registered_bundle(uri)
    except (NotABundleError, ValueError) as error:
        logger.warning("Champion %s cannot be loaded by this aeops (%s)", uri, error)
        return _Outcome("incomparable", version_value=new_value)
    except ModelNotFoundError as error:  # its artifacts are gone (say, `mlflow gc`)
        raise ModelNotFoundError(
            f"the champion {uri} cannot be loaded to compare the new version with ({error}). "
            "If its store was only unreachable, run again. If its files are gone (say "
            "after `mlflow gc`), every registration stops here until the 'champion' alias "
            "names a version that loads: point it at one (MlflowClient()."
            f"set_registered_model_alias({config.model_name!r}, 'champion', VERSION)) or "
            "delete the alias"
        ) from error
    try:
        result = compare(bundle, _training_rows(client, champion.run_id))
    except InputSchemaError as error:
        logger.warning("Champion %s cannot score this evaluation data (%s)", uri, error)
        return _Outcome("incomparable", version_value=new_value)
    if result is None:
        logger.warning("Champion %s was trained on every row of this test split; keeping it", uri)
        return _Outcome("no_unseen_rows", version_value=new_value)
    if result.excluded is None:
        logger.warning(
            "Champion %s did not record its training rows; comparing on all %d test rows, "
            "some of which it may have trained on",
            uri,
            result.rows,
        )
    elif result.excluded:
        logger.info(
            "Comparing with champion %s on the %d test rows neither was trained on (%d left out)",
            uri,
            result.rows,
            result.excluded,
        )
    champion_value, version_value = result.champion.get(metric), result.version.get(metric)
    tags = {
        "comparison_rows": str(result.rows),
        "comparison_rows_excluded": "unknown" if result.excluded is None else str(result.excluded),
    }
    if version_value is not None:
        tags[f"version_{metric}"] = f"{version_value:.6g}"
    if champion_value is None or version_value is None:
        logger.warning(
            "%s is undefined on the %d rows compared with champion %s (no labels, or one "
            "class only); keeping the champion",
            metric,
            result.rows,
            uri,
        )
        return _Outcome("undefined_on_compared_rows", champion_value, version_value, tags)
    return _Outcome("reevaluated", champion_value, version_value, tags)


def _unregister(
    client: MlflowClient,
    name: str,
    version: str,
    whole_model: bool,
    aliases_before: dict[str, tuple[str, str | None]],
) -> None:
    """Take back a version, and the model when this version created it and no other
    run has registered a version of it since.

    Each alias the registration moved (``aliases_before``: alias -> the version it was
    given, and the version that held it before, or None) goes back first, unless
    another run has moved it since. Deleting the version alone would leave no
    ``champion`` at all.
    """
    for alias, (given_to, before) in aliases_before.items():
        try:
            if _version_of(_holder(client, name, alias)) != given_to:
                continue
            if before is None:
                client.delete_registered_model_alias(name, alias)
            else:
                client.set_registered_model_alias(name, alias, before)
        except MlflowException as error:  # the version still goes, and its alias with it
            logger.warning(
                "Could not give %s of %s back to version %s (%s); set it by hand",
                alias,
                name,
                before,
                error,
            )
    try:
        client.delete_model_version(name, version)
        if whole_model and not client.search_model_versions(f"name = '{name}'"):
            client.delete_registered_model(name)
    except MlflowException as error:
        logger.warning(
            "Could not take back version %s of %s after the failure (%s); delete it by hand",
            version,
            name,
            error,
        )


def _unregister_unfinished(client: MlflowClient, name: str, run_id: str, whole_model: bool) -> None:
    """Take back the versions of ``name`` that run ``run_id`` created and did not finish
    registering (no ``registration_complete`` tag), and the model when they made it.

    Best effort, with requests that are not retried: when the call failed because the
    tracking server went away, retrying would hold the run for minutes more.
    """
    with _requests_not_retried():
        try:
            found = client.search_model_versions(f"name = '{name}' and run_id = '{run_id}'")
            for half_made in found:
                if half_made.tags.get(REGISTRATION_COMPLETE) != "true":
                    _unregister(client, name, str(half_made.version), whole_model, {})
            made_alone = whole_model and client.search_registered_models(f"name = '{name}'")
            if made_alone and not client.search_model_versions(f"name = '{name}'"):
                client.delete_registered_model(name)  # made just before its version
        except MlflowException as error:
            logger.warning("Could not look for a half-made version of %s (%s)", name, error)


#: MLflow settings under which an HTTP request fails at once, with a short timeout,
#: rather than retrying for minutes (MLflow's default): for requests to a tracking
#: server that may be gone.
REQUESTS_NOT_RETRIED = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0", "MLFLOW_HTTP_REQUEST_TIMEOUT": "5"}


def _requests_not_retried() -> contextlib.AbstractContextManager[None]:
    """:data:`REQUESTS_NOT_RETRIED` within the block (a user's own settings are kept)."""
    return environment_defaults(REQUESTS_NOT_RETRIED)


def _set_alias(client: MlflowClient, name: str, alias: str, version: str) -> None:
    """Point ``alias`` at ``version``. Two runs that set an alias no version holds yet,
    at once, through a server: its store inserts both, and the second insert fails
    with a unique-constraint error (MLflow's, on SQLite and PostgreSQL alike). The
    alias then exists, and setting it again updates it."""
    for attempt in range(3):
        try:
            client.set_registered_model_alias(name, alias, version)
            return
        except MlflowException as error:
            if attempt == 2 or "unique" not in str(error).lower():
                raise
            logger.info("Another run created %s of %s at the same moment; again", alias, name)
            time.sleep(0.2 * (attempt + 1))


def _decide_alias(
    client: MlflowClient,
    version: Any,
    new_value: float | None,
    base_tags: dict[str, str],
    config: RegistryConfig,
    evaluation_digest: str | None,
    compare: Compare | None,
    aliases_before: dict[str, tuple[str, str | None]],
) -> tuple[str, Any | None, _Outcome]:
    """Compare ``version`` with the champion, tag it, and give it its alias. A champion
    it beats becomes the ``challenger``: the runner-up, as a version that lost to the
    champion is, rather than an older loser left holding the alias. One displaced
    without a comparison (it cannot be read, or cannot score the new data) does not.

    Each alias it sets is recorded in ``aliases_before`` with the version it was given
    and the version that held it just before, so that a failure can give it back.

    Returns:
        The alias given, the champion it was compared with, and how they compared.
    """
    # MLflow has no registry lock. On a SQLite store a file lock serialises the
    # read-compare-write below. On a server, another run may move `champion` while we
    # compare, so the champion is read again just before and just after our write, and
    # a changed champion means deciding again against it; each round settles one race.
    with store_lock(mlflow.get_registry_uri()):
        for round_ in range(_MAX_ALIAS_ROUNDS):
            current = _champion(client, config.model_name)
            if round_ and _version_of(current) == str(version.version):
                break  # another run gave back the alias we wrote: the last round stands
            champion = current
            outcome = _Outcome("no_champion", version_value=new_value)
            if champion is not None:
                outcome = _compare_with(
                    client, champion, config, new_value, evaluation_digest, compare
                )
            old_value = outcome.champion_value
            promote = (
                champion is None
                or outcome.how == "incomparable"
                or (
                    outcome.how not in _KEEPS_THE_CHAMPION
                    and _beats(outcome.version_value, old_value, config.greater_is_better)
                )
            )
            alias = CHAMPION if promote else CHALLENGER
            changed = _version_of(_champion(client, config.model_name)) != _version_of(champion)
            if promote and changed and round_ < _MAX_ALIAS_ROUNDS - 1:
                continue  # the champion changed while we compared
            version_tags = {**base_tags, **(outcome.tags or {})}
            version_tags["compared_with_champion"] = outcome.how
            if champion is not None:
                version_tags["champion_version_before"] = str(champion.version)
                if old_value is not None:
                    version_tags[f"champion_{config.compare_metric}"] = f"{old_value:.6g}"
            for key, value in version_tags.items():
                client.set_model_version_tag(config.model_name, version.version, key, value)
            _move_alias(client, config.model_name, alias, str(version.version), aliases_before)
            displaced = aliases_before.get(CHAMPION, (None, None))[1] if promote else None
            if (
                displaced is not None
                and displaced != _version_of(champion)
                and round_ < _MAX_ALIAS_ROUNDS - 1
            ):
                # Another run made its version champion between our last look and our
                # write (two first versions at once): give it back, and compare with it.
                _set_alias(client, config.model_name, CHAMPION, displaced)
                logger.info(
                    "Version %s of %s took %s meanwhile; comparing with it",
                    displaced,
                    config.model_name,
                    CHAMPION,
                )
                continue
            if not promote or _version_of(_champion(client, config.model_name)) == str(
                version.version
            ):
                break
            logger.info("Another run took %s of %s; comparing again", CHAMPION, config.model_name)
        if promote and champion is not None and outcome.how != "incomparable":
            _move_alias(
                client, config.model_name, CHALLENGER, str(champion.version), aliases_before
            )
    return alias, champion, outcome


def _move_alias(
    client: MlflowClient,
    name: str,
    alias: str,
    version: str,
    aliases_before: dict[str, tuple[str, str | None]],
) -> None:
    """Point ``alias`` at ``version``, recording the version that held it before."""
    holder = _version_of(_holder(client, name, alias))
    if holder == version:
        return
    aliases_before[alias] = (version, holder)  # the latest other holder is the one to restore
    _set_alias(client, name, alias, version)


def register_bundle(
    predictor: Predictor,
    spec: BundleSpec,
    input_example: pd.DataFrame,
    metrics: dict[str, float],
    config: RegistryConfig,
    tags: dict[str, str],
    optional_columns: set[str] | None = None,
    evaluation_digest: str | None = None,
    compare: Compare | None = None,
    training_rows: np.ndarray | None = None,
) -> Registration:
    """Log the bundle in the active run, register it, and set its alias.

    The first version of a name becomes ``champion``. A later one takes ``champion``
    only when its ``config.compare_metric`` beats the current champion's **on the same
    evaluation data**: when the champion was evaluated on other data (its
    ``evaluation_digest`` tag differs), ``compare`` scores the champion's bundle and
    this version on the rows of this version's test split that the champion was not
    trained on. Otherwise the new version is the ``challenger``. A version without
    the metric (no labels) never displaces a champion that has one; a champion that
    cannot score the new data (another schema) is displaced; one that was trained on
    every test row, or on whose other rows the metric is undefined, is kept. How the
    comparison was made is recorded in the version's tags. ``training_rows`` (the row
    hashes of what this version was fitted and tuned on) are logged beside the model,
    so that later versions compare with it fairly.

    Raises:
        RuntimeError: if no MLflow run is active.
    """
    run = mlflow.active_run()
    if run is None:
        raise RuntimeError("register_bundle needs an active MLflow run")
    client = MlflowClient()
    info = log_bundle(predictor, spec, input_example, optional_columns)
    if training_rows is not None:
        _log_training_rows(training_rows)
    first_of_its_name = not client.search_registered_models(f"name = '{config.model_name}'")
    new_value = metrics.get(config.compare_metric)
    if new_value is None or math.isnan(new_value):
        logger.warning(
            "registry.compare_metric %s is undefined on this version's test split (one class "
            "only: no labelled anomaly, or no normal row, in its rows). The version takes "
            "%s only when none holds it (or the champion cannot score this data), and a "
            "later version takes it from this one by beating it on the later version's "
            "test rows. For a series, whose test split is its last part in time, set "
            "data.split so that it holds labelled anomalies, or compare by test_error_mean "
            "(registry.greater_is_better: false)",
            config.compare_metric,
            CHAMPION,
        )
    base_tags = {**tags, **{f"metric.{k}": f"{v:.6g}" for k, v in metrics.items()}}
    base_tags["compare_metric"] = config.compare_metric
    if evaluation_digest is not None:
        base_tags[EVALUATION_DIGEST] = evaluation_digest
    aliases_before: dict[str, tuple[str, str | None]] = {}
    # From the version's creation to its last tag, SIGTERM unwinds through Python, so
    # the clean-up below runs rather than the process ending half-way.
    with _sigterm_unwinds():
        # The caller's tags go on at once: one that ties the version to a kept model
        # lets a rerun after a crash find it (see aeops.serving.pending).
        try:
            version = mlflow.register_model(info.model_uri, config.model_name, tags=tags or None)
        except BaseException:
            # Interrupted after MLflow created the version (it then waits for it to be
            # ready): find it by this run's id, since the call never returned it.
            _unregister_unfinished(client, config.model_name, run.info.run_id, first_of_its_name)
            raise
        try:
            alias, champion, outcome = _decide_alias(
                client,
                version,
                new_value,
                base_tags,
                config,
                evaluation_digest,
                compare,
                aliases_before,
            )
            client.set_model_version_tag(
                config.model_name, version.version, REGISTRATION_COMPLETE, "true"
            )
        except BaseException:
            # A version without its alias and tags would be an orphan in the registry:
            # the failed run leaves the registry as it found it.
            _unregister(
                client, config.model_name, str(version.version), first_of_its_name, aliases_before
            )
            raise
    if champion is None and not first_of_its_name:
        logger.warning(
            "No version of %s held %s (was the alias removed by hand?): version %s took it "
            "without a comparison with the earlier versions",
            config.model_name,
            CHAMPION,
            version.version,
        )
    before = "no champion before" if champion is None else f"champion: version {champion.version}"
    if outcome.champion_value is not None:
        before += f", {outcome.champion_value}"
    logger.info(
        "Registered %s version %s as %s, models:/%s/%s (%s=%s; %s)",
        config.model_name,
        version.version,
        alias,
        config.model_name,
        version.version,
        config.compare_metric,
        new_value,
        before,
    )
    if outcome.version_value != new_value:
        logger.info(
            "On the %s rows both were compared on: %s=%s, champion %s",
            outcome.tags.get("comparison_rows") if outcome.tags else "?",
            config.compare_metric,
            outcome.version_value,
            outcome.champion_value,
        )
    return Registration(
        model_name=config.model_name,
        version=str(version.version),
        alias=alias,
        run_id=run.info.run_id,
        model_uri=f"models:/{config.model_name}/{version.version}",  # aliases move
        compare_metric=config.compare_metric,
        metric_value=new_value,
        champion_before=None if champion is None else str(champion.version),
        champion_metric_before=outcome.champion_value,
        compared_metric_value=outcome.version_value,
    )


def _log_training_rows(rows: np.ndarray) -> None:
    folder, name = TRAINING_ROWS_ARTIFACT.rsplit("/", 1)
    with tempfile.TemporaryDirectory(prefix="aeops-rows-") as temp:
        path = Path(temp) / name
        np.save(path, np.unique(np.asarray(rows, dtype=np.uint64)), allow_pickle=False)
        mlflow.log_artifact(str(path), folder)


@contextlib.contextmanager
def _sigterm_unwinds() -> Iterator[None]:
    """Within it, SIGTERM raises ``SystemExit(143)`` in the main thread, so ``finally``
    and ``except BaseException`` blocks run; the handler before it is put back after.
    Off the main thread, or where SIGTERM is ignored, nothing changes."""
    main = threading.current_thread() is threading.main_thread()
    if not main or signal.getsignal(signal.SIGTERM) == signal.SIG_IGN:
        yield
        return
    previous = signal.signal(signal.SIGTERM, _raise_system_exit)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _raise_system_exit(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)
