"""The node that replaces one fit with a hyperparameter sweep."""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass, field
from typing import Annotated, Any, get_args

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from pydantic import BaseModel, TypeAdapter, ValidationError
from pydantic.fields import FieldInfo
from sklearn.metrics import roc_auc_score

from aeops.data import DataConfig, FittedScaler, InputSpec
from aeops.models import Autoencoder, ModelConfig, ModelConfigError
from aeops.pipelines._params import ParameterError, parse_params
from aeops.pipelines.train.nodes import fit_autoencoder
from aeops.scoring import Predictor
from aeops.scoring.plots import training_curves
from aeops.serving import log_resolved_settings, nested_run
from aeops.training import TrainingConfig, TrainingDivergedError
from aeops.training.sweep import (
    RangeSpec,
    SweepConfig,
    apply_overrides,
    check_comparable_scores,
    fit_space_to_input,
    improves,
    run_sweep,
)

logger = logging.getLogger(__name__)


def _labels(validation_frame: pd.DataFrame, config: SweepConfig, data: DataConfig) -> Any:
    """Validation labels for the AUROC objective; a clear error when it cannot work."""
    if config.objective != "validation_auroc":
        return None
    label = data.label_column
    if label is None or label not in validation_frame:
        raise ParameterError(
            "sweep.objective=validation_auroc needs labels in the validation split "
            f"(data.label_column={label!r}); use sweep.objective=validation_error"
        )
    labels = validation_frame[label].to_numpy().astype(int)
    if len(np.unique(labels)) < 2:
        raise ParameterError(
            "sweep.objective=validation_auroc needs both normal and anomalous rows in the "
            "validation split; use sweep.objective=validation_error"
        )
    return labels


# What `_Trials._fit` sets for every trial, whatever the training block says.
_SET_BY_THE_SWEEP = ("training.resume", "training.progress", "training.checkpoint_dir")


def check_space(config: SweepConfig) -> None:
    """Each key of the space against its field in the model or training block, before
    any trial trains: the key must exist, and the values the space can give (a
    range's ends, a value between them, every choice) must pass the field's own rules.

    Rules that tie fields together (``min_lr`` below ``lr``) are left to each trial,
    since other keys of the space may change the field they compare with.

    Raises:
        ParameterError: naming the space's key, the value and the rule it breaks.
    """
    schemas: dict[str, type[BaseModel]] = {"model": ModelConfig, "training": TrainingConfig}
    for key, spec in config.space.items():
        if key in _SET_BY_THE_SWEEP:
            raise ParameterError(
                f"sweep.space[{key!r}]: the sweep sets {key} for every trial (each trains "
                "from scratch in its own folder, without a progress bar)"
            )
        area, _, path = key.partition(".")
        field = _field(schemas[area], path.split("."))
        if field is None:
            raise ParameterError(f"sweep.space[{key!r}]: the {area} block has no key {path!r}")
        adapter: TypeAdapter[Any] = TypeAdapter(Annotated[field.annotation, field])  # type: ignore[arg-type]
        for value in spec if isinstance(spec, list) else _probes(spec):
            reason = _refusal(adapter, schemas[area], path.split("."), value)
            if reason is not None:
                raise ParameterError(
                    f"sweep.space[{key!r}] can give {value!r}, which {key} refuses: {reason}"
                )


def _refusal(
    adapter: TypeAdapter[Any], schema: type[BaseModel], path: list[str], value: Any
) -> str | None:
    """Why the field at ``path`` refuses ``value``, or None. A top-level field's own
    validators (``model.kind`` against the registry) run too; errors of the block as
    a whole (fields compared with each other) are left to the trials."""
    try:
        adapter.validate_python(value)
    except ValidationError as error:
        return str(error.errors()[0]["msg"])
    if len(path) > 1:
        return None
    try:
        schema.model_validate({path[0]: value})
    except ValidationError as error:
        own = [e for e in error.errors() if tuple(e["loc"][:1]) == (path[0],)]
        if own:
            return str(own[0]["msg"])
    return None


def _field(schema: type[BaseModel], path: list[str]) -> FieldInfo | None:
    """The field at ``path`` in ``schema``, through nested blocks; None if absent."""
    field = schema.model_fields.get(path[0])
    if field is None or len(path) == 1:
        return field
    nested = [
        kind
        for kind in (field.annotation, *get_args(field.annotation))
        if isinstance(kind, type) and issubclass(kind, BaseModel)
    ]
    return _field(nested[0], path[1:]) if nested else None


def _probes(spec: RangeSpec) -> list[float]:
    """Values a range can give: its low end, its highest reachable value, and, for a
    float range, one between them (an int field refuses fractions)."""
    high = spec.high
    if spec.step is not None:
        high = spec.low + math.floor((spec.high - spec.low) / spec.step + 1e-9) * spec.step
    probes = [spec.low, high]
    if not spec.integer and spec.high > spec.low:
        probes.append(spec.low + (spec.high - spec.low) / 3)
    return probes


@dataclass
class _Trials:
    """Trains and scores one sampled configuration per call, each in a nested MLflow
    run, and keeps the best trial's model and history (the rule is ``run_sweep``'s:
    the first of equal values wins)."""

    config: SweepConfig
    model: dict[str, Any]
    training: dict[str, Any]
    data: dict[str, Any]
    input_spec: InputSpec
    scaler: FittedScaler
    train_x: np.ndarray
    validation_x: np.ndarray
    validation_frame: pd.DataFrame
    labels: np.ndarray | None
    best: dict[str, Any] = field(default_factory=dict)
    # Finished trials by their values: TPE may sample a configuration again (a small
    # space of choices), and training it again would give the same model.
    finished: dict[str, tuple[int, dict[str, float]]] = field(default_factory=dict)

    def __call__(self, number: int, params: dict[str, Any]) -> float:
        """The objective of trial ``number``, trained with ``params`` over the blocks."""
        key = json.dumps(params, sort_keys=True, default=str)
        if key in self.finished:
            return self._repeat(number, params, *self.finished[key])
        with nested_run(f"trial-{number}", params, {"sweep_trial": str(number)}) as log:
            autoencoder, history = self._fit(number, params)
            value = self._objective(number, params, autoencoder)
            metrics = {
                self.config.objective: value,
                "best_validation_loss": history["best_validation_loss"],
                "epochs_trained": history["epochs_trained"],
            }
            log(metrics)
        self.finished[key] = (number, metrics)
        if math.isfinite(value) and (not self.best or self._beats(value, self.best["value"])):
            self.best.update(
                value=value, model=autoencoder, history=history, number=number, params=params
            )
        return value

    def settings(
        self, number: int, params: dict[str, Any], model: Autoencoder
    ) -> dict[str, dict[str, Any]]:
        """The model and training blocks trial ``number`` trained with, in full."""
        training = self._training_block(params, number)
        return {
            "model": model.config.model_dump(mode="json"),
            "training": parse_params(TrainingConfig, training, "training").model_dump(mode="json"),
        }

    def _training_block(self, params: dict[str, Any], number: int) -> dict[str, Any]:
        """The training block trial ``number`` trains with: the sweep's values, no
        progress bar, and a checkpoint folder of its own (trials never resume each
        other's checkpoints)."""
        training = apply_overrides(self.training, "training", params)
        folder = parse_params(TrainingConfig, self.training, "training").checkpoint_dir
        training.update(progress=False, resume=False, checkpoint_dir=f"{folder}/trial-{number}")
        return training

    def _repeat(
        self, number: int, params: dict[str, Any], earlier: int, metrics: dict[str, float]
    ) -> float:
        """Trial ``number`` samples trial ``earlier``'s values: its results, not a fit."""
        logger.info(
            "Trial %d repeats trial %d's values %s: its results are reused", number, earlier, params
        )
        tags = {"sweep_trial": str(number), "sweep_repeat_of": str(earlier)}
        with nested_run(f"trial-{number}", params, tags) as log:
            log(metrics)
        # An equal value never beats the earlier trial's (the first of equals wins).
        return metrics[self.config.objective]

    def _fit(self, number: int, params: dict[str, Any]) -> tuple[Autoencoder, dict[str, Any]]:
        model_params = apply_overrides(self.model, "model", params)
        training_params = self._training_block(params, number)
        try:
            return fit_autoencoder(
                self.train_x,
                self.validation_x,
                self.input_spec,
                model_params,
                training_params,
                self.data,
            )
        except (ParameterError, ModelConfigError) as error:
            problems = str(error).split("\n", 1)[-1]  # the keys, without the block's header
            raise ParameterError(
                f"trial {number}: the values sweep.space gave it, {params}, make an "
                f"invalid configuration:\n{problems}"
            ) from None

    def _objective(self, number: int, params: dict[str, Any], model: Autoencoder) -> float:
        predictor = Predictor(model=model, inputs=self.input_spec, scaler=self.scaler)
        errors = predictor.reconstruction_errors(self.validation_frame)
        if not np.isfinite(errors).all():
            raise TrainingDivergedError(
                f"trial {number}: the model's validation errors are not finite "
                f"(parameters {params}); the trial counts as failed"
            )
        if self.labels is None:
            return float(np.mean(errors))
        return float(roc_auc_score(self.labels, errors))

    def _beats(self, value: float, best: float) -> bool:
        return improves(value, best, self.config.direction)


def sweep_hyperparameters(
    train_frame: pd.DataFrame,
    validation_frame: pd.DataFrame,
    input_spec: InputSpec,
    scaler: FittedScaler,
    model: dict[str, Any],
    training: dict[str, Any],
    data: dict[str, Any],
    sweep: dict[str, Any],
) -> tuple[Autoencoder, dict[str, Any], Figure, pd.DataFrame]:
    """Train one model per sampled configuration and keep the best on validation.

    Each trial is a nested MLflow run holding its configuration and objective; the
    parent run (this pipeline's) gets ``sweep.best.<key>`` params and goes on to
    threshold, evaluate on test and register the best model like ``train``. Test
    data never enters the choice.

    Returns:
        The best trial's model, its metric history (with the sweep's summary), its
        training curves, and a table of every finished trial.

    Raises:
        ParameterError: for an invalid ``sweep`` block or a sampled value the model or
            training block rejects, or an objective the data cannot support.
    """
    config = parse_params(SweepConfig, sweep, "sweep")
    check_space(config)
    if parse_params(TrainingConfig, training, "training").resume:
        logger.warning(
            "training.resume does not apply to a sweep: each trial trains from scratch in "
            "<training.checkpoint_dir>/trial-N"
        )
    try:
        check_comparable_scores(config, parse_params(ModelConfig, model, "model"))
        config = fit_space_to_input(config, input_spec.sample_shape)
    except ValueError as error:
        raise ParameterError(str(error)) from None
    labels = _labels(validation_frame, config, parse_params(DataConfig, data, "data"))
    trials = _Trials(
        config,
        model,
        training,
        data,
        input_spec,
        scaler,
        train_x=input_spec.samples(train_frame, scaler),
        validation_x=input_spec.samples(validation_frame, scaler),
        validation_frame=validation_frame,
        labels=labels,
    )
    outcome = run_sweep(config, trials)
    best = trials.best
    if best.get("number") != outcome.best.number:  # one rule must pick one trial
        raise RuntimeError(
            f"the sweep chose trial {outcome.best.number} but kept trial {best.get('number')}"
        )
    logger.info(
        "Best of %d trial(s): trial %d, %s = %.6g, %s",
        len(outcome.trials),
        outcome.best.number,
        config.objective,
        outcome.best.value,
        outcome.best.params,
    )
    # The parent's own model.* and training.* parameters are the base blocks, which
    # MLflow cannot change: the winner's whole configuration goes beside them.
    settings = trials.settings(best["number"], best["params"], best["model"])
    log_resolved_settings(settings, prefix="sweep.best.")
    history = dict(best["history"])
    history.update(
        {
            f"sweep_best_{config.objective}": outcome.best.value,
            "sweep_best_trial": outcome.best.number,
            "sweep_trials_finished": len(outcome.trials),
            "sweep_trials_failed": outcome.failed,
        }
    )
    table = pd.DataFrame(
        [{"trial": t.number, **t.params, config.objective: t.value} for t in outcome.trials]
    )
    return best["model"], history, training_curves(history), table
