"""Hyperparameter sweeps with Optuna over the ``model`` and ``training`` blocks.

A search space maps dotted parameter keys (``model.latent_dim``, ``training.lr``,
``model.noise.level``) to a list of choices or a numeric range. The caller supplies
one function that trains and measures a trial's configuration; this module only
samples configurations and keeps score. Optuna is an optional dependency (the
``sweep`` extra) and is imported when a sweep starts.
"""

from __future__ import annotations

import copy
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from aeops._errors import NoTracebackForRefusals
from aeops.models import ModelConfig
from aeops.training._records import TrainingDivergedError

logger = logging.getLogger(__name__)

#: the parameter blocks a sweep may change.
SWEEPABLE_AREAS = ("model", "training")


class RangeSpec(BaseModel):
    """A numeric range: ints when both ends are ints (or ``type: int``), else floats."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    # int | float keeps what the file wrote: 1 is an int, 1.0 a float.
    low: int | float
    high: int | float
    log: bool = False
    step: int | float | None = Field(default=None, gt=0)
    type: Literal["int", "float"] | None = None

    @model_validator(mode="after")
    def _ordered(self) -> RangeSpec:
        if self.low > self.high:
            raise ValueError(f"low {self.low} is above high {self.high}")
        if self.log and self.low <= 0:
            raise ValueError(f"a log range needs low > 0, got {self.low}")
        if self.log and self.step is not None:
            raise ValueError("a range cannot be both log and stepped")
        if self.integer and self.step is not None and not float(self.step).is_integer():
            raise ValueError(f"an int range needs a whole step, got {self.step}")
        if self.integer and not (float(self.low).is_integer() and float(self.high).is_integer()):
            raise ValueError(f"an int range needs whole ends, got {self.low} and {self.high}")
        return self

    @property
    def integer(self) -> bool:
        """Whether the range samples ints: ``type: int``, or both ends written as ints."""
        if self.type is not None:
            return self.type == "int"
        return isinstance(self.low, int) and isinstance(self.high, int)


class SweepConfig(BaseModel):
    """The ``sweep`` block.

    Attributes:
        n_trials: how many configurations to train.
        timeout_minutes: stop starting trials after this long (None: no limit).
        seed: of the sampler (TPE), so the same sweep picks the same trials.
        objective: ``validation_auroc`` (higher is better; needs labels in the
            validation split) or ``validation_error`` (the mean anomaly score of
            validation rows, lower is better; no labels needed).
        space: ``{"model.latent_dim": {"low": 2, "high": 16}, "model.kind": [...]}``.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    n_trials: int = Field(default=12, ge=1)
    timeout_minutes: float | None = Field(default=None, gt=0.0)
    seed: int = Field(default=0, ge=0, lt=2**32)  # numpy, torch and Optuna take these
    objective: Literal["validation_auroc", "validation_error"] = "validation_auroc"
    space: dict[str, list[Any] | RangeSpec] = Field(default_factory=dict)

    @field_validator("space", mode="before")
    @classmethod
    def _choices_or_range(cls, space: Any) -> Any:
        """Each entry read by its shape, so a mistake is named once, by what it is
        (pydantic would report it against both kinds of entry, in its own terms)."""
        if not isinstance(space, dict):
            return space
        parsed: dict[str, Any] = {}
        for key, spec in space.items():
            if isinstance(spec, list | tuple):
                parsed[key] = list(spec)
            elif isinstance(spec, RangeSpec):
                parsed[key] = spec
            elif isinstance(spec, dict):
                try:
                    parsed[key] = RangeSpec.model_validate(spec)
                except ValidationError as error:
                    reasons = "; ".join(
                        (f"{'.'.join(map(str, e['loc']))}: " if e["loc"] else "")
                        + e["msg"].removeprefix("Value error, ")
                        for e in error.errors()
                    )
                    raise ValueError(f"{key!r}: {reasons}") from None
            else:
                raise ValueError(
                    f"{key!r} is {spec!r}: give a list of choices ([2, 4, 8]) or a range "
                    "({low: 2, high: 16}, optionally log, step, type)"
                )
        return parsed

    @field_validator("space")
    @classmethod
    def _known_keys(cls, space: dict[str, list[Any] | RangeSpec]) -> dict[str, Any]:
        if not space:
            raise ValueError("the search space is empty; add keys such as model.latent_dim")
        for key, spec in space.items():
            area, _, rest = key.partition(".")
            if area not in SWEEPABLE_AREAS or not rest:
                raise ValueError(
                    f"{key!r} is not a sweepable key; use model.<key> or training.<key>"
                )
            if isinstance(spec, list) and not spec:
                raise ValueError(f"{key!r} lists no choices")
        return space

    @property
    def direction(self) -> Literal["maximize", "minimize"]:
        """Which way the objective improves."""
        return "maximize" if self.objective == "validation_auroc" else "minimize"


def fit_space_to_input(config: SweepConfig, sample_shape: tuple[int, ...]) -> SweepConfig:
    """``config`` with ``model.latent_dim`` kept below the values of one sample, which a
    code must be narrower than: the shipped range (2 to 16) would fail a trial on a
    table of six columns. Values the input cannot take are dropped, with a warning.

    Raises:
        ValueError: if the space leaves no latent_dim the input can take.
    """
    key = "model.latent_dim"
    spec = config.space.get(key)
    if spec is None:
        return config
    width = math.prod(sample_shape)
    why = f"a code must be narrower than the {width} input values of one sample"
    if isinstance(spec, list):
        kept = [value for value in spec if not isinstance(value, int | float) or value < width]
        if not kept:
            raise ValueError(f"sweep.space[{key!r}] offers only {spec}, but {why}")
        if len(kept) == len(spec):
            return config
        narrowed: list[Any] | RangeSpec = kept
        logger.warning("sweep.space[%r]: %s dropped (%s)", key, sorted(set(spec) - set(kept)), why)
    else:
        if spec.low >= width:
            raise ValueError(f"sweep.space[{key!r}] starts at {spec.low}, but {why}")
        if spec.high < width:
            return config
        narrowed = spec.model_copy(update={"high": width - 1})
        logger.warning(
            "sweep.space[%r]: its range %s to %s narrowed to %s to %s (%s)",
            key,
            spec.low,
            spec.high,
            spec.low,
            width - 1,
            why,
        )
    return config.model_copy(update={"space": {**config.space, key: narrowed}})


def check_comparable_scores(sweep: SweepConfig, model: ModelConfig) -> None:
    """``validation_error`` compares the trials' mean scores, so every trial must score
    in one unit. The reconstruction loss (mse, l1, bce) changes it, and so does a VAE
    scored by its negative ELBO (which adds the KL term) among trials that are not.

    Args:
        sweep: the ``sweep`` block.
        model: the base ``model`` block, which the space's keys override.

    Raises:
        ValueError: naming the space's key and its choices.
    """
    if sweep.objective != "validation_error":
        return

    def choices(key: str, base: str) -> list[str]:
        spec = sweep.space.get(f"model.{key}")
        return list(dict.fromkeys(map(str, spec))) if isinstance(spec, list) else [base]

    losses = choices("reconstruction_loss", model.reconstruction_loss)
    kinds = choices("kind", model.kind)
    scores = choices("anomaly_score", model.anomaly_score)
    if len(losses) > 1:
        key, why = "reconstruction_loss", losses
    elif "vae" in kinds and "elbo" in scores and len(kinds) > 1:
        key, why = "kind", kinds  # a VAE scored by its ELBO, beside other kinds
    elif "vae" in kinds and len(scores) > 1:
        key, why = "anomaly_score", scores
    else:
        return
    raise ValueError(
        "sweep.objective=validation_error compares the trials' mean scores, which are in "
        f"different units across the choices of sweep.space['model.{key}'] "
        f"({', '.join(why)}); fix model.{key}"
        + (", or score a VAE by model.anomaly_score: reconstruction" if key == "kind" else "")
        + ", or use sweep.objective=validation_auroc (needs labels)"
    )


def apply_overrides(block: dict[str, Any], area: str, overrides: dict[str, Any]) -> dict[str, Any]:
    """A deep copy of the ``area`` block with the overrides under ``area.`` set."""
    updated = copy.deepcopy(block)
    for key, value in overrides.items():
        prefix, _, path = key.partition(".")
        if prefix != area:
            continue
        *parents, leaf = path.split(".")
        target = updated
        for parent in parents:
            child = target.get(parent)
            target[parent] = child = dict(child) if isinstance(child, dict) else {}
            target = child
        target[leaf] = value
    return updated


@dataclass(frozen=True)
class TrialOutcome:
    """One finished trial: its number, configuration and objective value."""

    number: int
    params: dict[str, Any]
    value: float


@dataclass(frozen=True)
class SweepOutcome:
    """Every trial, and which was best."""

    trials: list[TrialOutcome]
    failed: int
    best: TrialOutcome


def run_sweep(
    config: SweepConfig, evaluate: Callable[[int, dict[str, Any]], float]
) -> SweepOutcome:
    """Sample ``n_trials`` configurations and call ``evaluate(number, params)`` on each.

    A trial whose training diverges (NaN loss) counts as failed and the sweep goes on;
    any other error stops it.

    Raises:
        ImportError: naming the ``sweep`` extra when Optuna is not installed.
        RuntimeError: if no trial finished.
    """
    try:
        import optuna
    except ImportError as error:  # pragma: no cover - the dev install has it
        raise ImportError(
            "sweeps need Optuna: pip install 'aeops[sweep]' (or -e '.[sweep]')"
        ) from error
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    # A trial refused with an aeops error (a setting that does not fit the data) stops
    # the sweep with that error's message; Optuna's warning need not repeat its frames.
    optuna_logger = logging.getLogger("optuna.study._optimize")
    if not any(isinstance(f, NoTracebackForRefusals) for f in optuna_logger.filters):
        optuna_logger.addFilter(NoTracebackForRefusals())
    study = optuna.create_study(
        direction=config.direction, sampler=optuna.samplers.TPESampler(seed=config.seed)
    )

    def objective(trial: optuna.Trial) -> float:
        params = {key: _suggest(trial, key, spec) for key, spec in config.space.items()}
        value = evaluate(trial.number, params)
        logger.info("Trial %d: %s = %.6g with %s", trial.number, config.objective, value, params)
        return value

    timeout = None if config.timeout_minutes is None else config.timeout_minutes * 60
    study.optimize(
        objective, n_trials=config.n_trials, timeout=timeout, catch=(TrainingDivergedError,)
    )
    finished = [
        TrialOutcome(trial.number, _trial_params(trial.params, config), float(trial.value))
        for trial in study.trials
        if trial.state == optuna.trial.TrialState.COMPLETE and trial.value is not None
    ]
    if not finished:
        raise RuntimeError(f"none of the {len(study.trials)} sweep trials finished")
    best = finished[0]
    for outcome in finished[1:]:
        if improves(outcome.value, best.value, config.direction):
            best = outcome
    return SweepOutcome(trials=finished, failed=len(study.trials) - len(finished), best=best)


def improves(value: float, best: float, direction: str) -> bool:
    """Whether ``value`` beats ``best`` by more than rounding: two trials whose AUROC is
    the same fraction can differ in the last bit, and the first of them wins a tie."""
    margin = 1e-12 * max(1.0, abs(best))
    return value > best + margin if direction == "maximize" else value < best - margin


def _suggest(trial: Any, key: str, spec: list[Any] | RangeSpec) -> Any:
    if isinstance(spec, list):
        # Optuna stores choices by value; lists (hidden_dims) travel as their index.
        if _plain(spec):
            return trial.suggest_categorical(key, spec)
        return spec[trial.suggest_categorical(key, list(range(len(spec))))]
    if spec.integer:
        step = int(spec.step) if spec.step is not None else 1
        return trial.suggest_int(key, int(spec.low), int(spec.high), step=step, log=spec.log)
    return trial.suggest_float(key, spec.low, spec.high, step=spec.step, log=spec.log)


def _trial_params(raw: dict[str, Any], config: SweepConfig) -> dict[str, Any]:
    """Optuna's stored values, with list choices mapped back from their index."""
    params = {}
    for key, value in raw.items():
        spec = config.space[key]
        indexed = isinstance(spec, list) and not _plain(spec)
        params[key] = spec[value] if isinstance(spec, list) and indexed else value
    return params


def _plain(choices: list[Any]) -> bool:
    """Whether Optuna can store the choices as they are (else by index)."""
    return all(isinstance(choice, str | int | float | bool) for choice in choices)
