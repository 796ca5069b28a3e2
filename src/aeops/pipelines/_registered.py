"""Loading the registered model a pipeline works with, and tagging its run with it."""

from __future__ import annotations

import logging
from typing import Any

from aeops.pipelines._params import parse_params
from aeops.serving import (
    LoadedBundle,
    RegistryConfig,
    default_model_uri,
    load_registered_bundle,
    tag_evaluated_model,
)

logger = logging.getLogger(__name__)


def load_model_for(model_uri: str | None, registry: dict[str, Any], role: str) -> LoadedBundle:
    """Load ``model_uri`` (None: the registry's champion) and tag the run ``<role>_*``.

    Raises:
        ModelNotFoundError: if the URI names no loadable aeops bundle.
    """
    uri = model_uri or default_model_uri(
        parse_params(RegistryConfig, registry, "registry").model_name
    )
    bundle = load_registered_bundle(uri)
    tag_evaluated_model(bundle.provenance, role=role)
    logger.info("Using %s", bundle.provenance)
    return bundle
