"""Turning a parameter block into its typed config at the node boundary."""

from __future__ import annotations

import difflib
from typing import Any, TypeVar, get_args

from pydantic import BaseModel, ValidationError

_C = TypeVar("_C", bound=BaseModel)


class ParameterError(ValueError):
    """A parameter block does not validate; the message names each bad key."""


def parse_params(config_cls: type[_C], params: dict[str, Any] | None, area: str) -> _C:
    """Validate ``params`` (the block under ``area``) into ``config_cls``.

    Raises:
        ParameterError: naming ``area.key`` for each invalid or unknown key.
    """
    try:
        return config_cls.model_validate(params or {})
    except ValidationError as error:
        problems = []
        for issue in error.errors():
            key = ".".join(str(part) for part in (area, *issue["loc"]))
            given = issue.get("input")
            hint = ""
            if issue["type"] == "extra_forbidden":
                names = _keys_at(config_cls, issue["loc"][:-1])
                close = difflib.get_close_matches(str(issue["loc"][-1]), names, n=1)
                hint = f"; did you mean {close[0]!r}?" if close else ""
            message = issue["msg"].removeprefix("Value error, ")  # pydantic's own prefix
            problems.append(f"  {key}: {message} (given: {given!r}){hint}")
        raise ParameterError(
            f"invalid parameters in '{area}' (parameters_{area}.yml of conf/base or the "
            "run's --env, or --params):\n" + "\n".join(problems)
        ) from None


def _keys_at(config_cls: type[BaseModel], loc: tuple[Any, ...]) -> list[str]:
    """The keys of the block at ``loc`` in ``config_cls`` (nested blocks followed)."""
    schema = config_cls
    for part in loc:
        field = schema.model_fields.get(str(part))
        if field is None:
            return []
        nested = [
            kind
            for kind in (field.annotation, *get_args(field.annotation))
            if isinstance(kind, type) and issubclass(kind, BaseModel)
        ]
        if not nested:
            return []
        schema = nested[0]
    return list(schema.model_fields)


def parameter_blocks() -> dict[str, type[BaseModel]]:
    """The schema of each parameter block, by its name (imported when asked for, since
    the nodes that parse them import this module)."""
    from aeops.data import DataConfig, ScalingConfig
    from aeops.embedding import BatchJobConfig
    from aeops.models import ModelConfig
    from aeops.pipelines.evaluate.nodes import EvaluateConfig
    from aeops.pipelines.generate.nodes import GenerateConfig
    from aeops.pipelines.impute.nodes import ImputeConfig
    from aeops.scoring import ThresholdConfig
    from aeops.serving import RegistryConfig
    from aeops.training import TrainingConfig
    from aeops.training.sweep import SweepConfig

    return {
        "data": DataConfig,
        "scaling": ScalingConfig,
        "model": ModelConfig,
        "training": TrainingConfig,
        "threshold": ThresholdConfig,
        "registry": RegistryConfig,
        "evaluate": EvaluateConfig,
        "generate": GenerateConfig,
        "impute": ImputeConfig,
        "sweep": SweepConfig,
        "embed": BatchJobConfig,
        "score": BatchJobConfig,
    }


def check_together(blocks: dict[str, BaseModel]) -> None:
    """Rules between parsed blocks (and the machine) that a pipeline would otherwise
    meet only after training, or at its train node: a method, objective or compare
    metric that needs labels, with ``data.label_column`` null; a sweep objective that would compare
    scores in different units; a ``training.device`` or ``precision`` this machine
    cannot give.

    Raises:
        ParameterError: naming both keys.
    """
    from aeops.models import ModelConfig
    from aeops.scoring import LABEL_FREE_METRICS
    from aeops.training import TrainingConfig
    from aeops.training.sweep import SweepConfig, check_comparable_scores

    training = blocks.get("training")
    if isinstance(training, TrainingConfig):
        from aeops.training import resolve_device, resolve_precision

        try:  # a missing GPU met at the train node left a FAILED run behind
            resolve_precision(training.precision, resolve_device(training.device))
        except (RuntimeError, ValueError) as error:
            raise ParameterError(str(error)) from None
    sweep, model = blocks.get("sweep"), blocks.get("model")
    if isinstance(sweep, SweepConfig):
        from aeops.pipelines.sweep.nodes import check_space

        check_space(sweep)  # each key against its field, before a run is opened
    if isinstance(sweep, SweepConfig) and isinstance(model, ModelConfig):
        try:
            check_comparable_scores(sweep, model)
        except ValueError as error:
            raise ParameterError(str(error)) from None
    data = blocks.get("data")
    if data is None or getattr(data, "label_column", None) is not None:
        return
    if getattr(blocks.get("threshold"), "method", None) == "f1":
        raise ParameterError(
            "threshold.method='f1' needs labels on the validation split, and "
            "data.label_column is null; set data.label_column, or choose quantile, fpr "
            "(all validation rows taken as normal) or pot"
        )
    if getattr(blocks.get("sweep"), "objective", None) == "validation_auroc":
        raise ParameterError(
            "sweep.objective=validation_auroc needs labels on the validation split, and "
            "data.label_column is null; set data.label_column, or use "
            "sweep.objective=validation_error (its trials must score alike: see the README)"
        )
    metric = getattr(blocks.get("registry"), "compare_metric", None)
    if metric is not None and metric.removeprefix("test_") not in LABEL_FREE_METRICS:
        raise ParameterError(
            f"registry.compare_metric={metric} needs labels on the test split, and "
            "data.label_column is null: no later version could ever become champion. "
            "Set data.label_column, or compare versions without labels, by their mean "
            "reconstruction error on the same rows: registry.compare_metric=test_error_mean "
            "and registry.greater_is_better=false"
        )
