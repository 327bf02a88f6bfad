"""The `Recipe` model: one fine-tuning run, top to bottom."""

from __future__ import annotations

import os
from typing import Literal, Optional, Union

from pydantic import Field

from .adapters import Adapter
from .base import Section
from .datasets import Datasets
from .evaluation import Evaluation
from .hardware import Hardware
from .objectives import Objective
from .sections import Model, Output, Quantization, Training


class Recipe(Section):
    """A fine-tuning recipe: model, quantization, adapter, objective, data, training, hardware and output."""

    version: Literal[1] = Field(description="Recipe format version; always 1 for now.")
    name: str = Field(
        pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$",
        max_length=128,
        description="Short identifier of the recipe (letters, digits, `.`, `_`, `-`); names the "
        "default output directory.",
    )
    description: str = Field("", description="What the recipe trains and why, in a sentence or two.")
    extends: Optional[Union[str, list[str]]] = Field(
        None,
        description="Base recipe(s) this one builds on, relative to this file. Mappings merge (this file wins), lists "
        "and scalars replace; a different adapter or objective `kind` replaces the whole section.",
    )
    model: Model = Field(description="The base model.")
    quantization: Quantization = Field(
        default_factory=Quantization, description="Quantized loading of the base weights."
    )
    adapter: Adapter = Field(description="Which parameters train: `full` or a PEFT adapter.")
    objective: Objective = Field(description="What the model learns; selects the TRL trainer.")
    datasets: Datasets = Field(description="Training and evaluation data.")
    training: Training = Field(description="Optimisation and batch settings.")
    hardware: Hardware = Field(description="The machines the run is planned for.")
    output: Output = Field(default_factory=Output, description="Where outputs go and which trackers get metrics.")
    evaluation: Evaluation = Field(
        default_factory=Evaluation, description="What `recipe eval` measures, before and after training."
    )

    @property
    def output_dir(self) -> str:
        return os.path.expanduser(self.output.dir or f"outputs/{self.name}")

    @property
    def is_quantized(self) -> bool:
        return self.quantization.method != "none"
