"""The base every recipe section shares: strict types, unknown keys refused."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class Section(BaseModel):
    """A recipe section: every field typed, documented, and unknown keys are errors."""

    model_config = ConfigDict(extra="forbid", strict=True, defer_build=True)
