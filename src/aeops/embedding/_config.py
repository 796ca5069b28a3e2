"""Typed configuration of the ``embed`` and ``score`` parameter blocks."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class BatchJobConfig(BaseModel):
    """The ``embed`` or ``score`` block."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    model_uri: str | None = None  # None: models:/<registry.model_name>@champion
    engine: Literal["local", "spark"] = "local"
    batch_rows: int = Field(default=65536, ge=1)
    invalid_rows: Literal["fail", "quarantine"] = "fail"
