"""One ephemeral Great Expectations context per process, created lazily and reused."""

from __future__ import annotations

import logging
import os
import threading
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from great_expectations.core.batch_definition import BatchDefinition

logger = logging.getLogger(__name__)

_DATASOURCE_NAME = "aeops_validation"
_ASSET_NAME = "frame"
_BATCH_DEFINITION_NAME = "whole_frame"

#: Serialises access to the shared context: GX data sources are not documented as
#: thread-safe, and one validation of a small frame takes well under a second.
GX_LOCK = threading.RLock()

_batch_definition: BatchDefinition | None = None
_owner_pid: int | None = None


def whole_frame_batch_definition() -> BatchDefinition:
    """Return the cached whole-dataframe batch definition of this process's GX context.

    The first call creates an ephemeral (in-memory) context with analytics and progress bars
    switched off, one pandas data source, one dataframe asset and one whole-dataframe batch
    definition. Frames are passed per validation as ``batch_parameters={"dataframe": frame}``.
    The caller must hold :data:`GX_LOCK` while using the result.

    Returns:
        The batch definition to call ``get_batch(batch_parameters=...)`` on.
    """
    global _batch_definition, _owner_pid
    with GX_LOCK:
        pid = os.getpid()
        if _batch_definition is None or _owner_pid != pid:
            _batch_definition = _create_batch_definition()
            _owner_pid = pid
        return _batch_definition


def _create_batch_definition() -> BatchDefinition:
    # Read by GX when a context is created; this build of GX sends nothing, but keep it off.
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")

    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    logger.debug("Creating ephemeral Great Expectations context")
    context = gx.get_context(mode="ephemeral")
    # tqdm bars ("Calculating Metrics") would otherwise be written to stderr per validation.
    context.variables.progress_bars = ProgressBarsConfig(globally=False, metric_calculations=False)
    datasource = context.data_sources.add_pandas(name=_DATASOURCE_NAME)
    asset = datasource.add_dataframe_asset(name=_ASSET_NAME)
    return asset.add_batch_definition_whole_dataframe(name=_BATCH_DEFINITION_NAME)
