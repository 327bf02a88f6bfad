"""What resolution produces: a Plan, its decisions and its problems."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

from schemas import Recipe
from schemas.hardware import HardwareProfile

from .architecture import Architecture


@dataclass
class Decision:
    what: str
    value: Any
    why: str


@dataclass
class Problem:
    """A reason the plan cannot run, located at a recipe field."""

    path: tuple
    message: str
    rule: str
    severity: str = "error"


@dataclass
class Plan:
    recipe: Recipe
    resolved: dict  # the recipe with defaults filled and every `auto` replaced by the decision
    world_size: int
    precision: str
    dtype: str
    attention: str
    micro_batch_size: int
    gradient_accumulation_steps: int
    gradient_checkpointing: bool
    zero: Optional[int]
    offload: str
    trainer: dict
    peft: Optional[dict]
    quantization: Optional[dict]
    deepspeed: Optional[dict]
    accelerate: dict
    launch: list[str]
    memory: dict
    hardware: HardwareProfile
    architecture: Optional[Architecture]
    output_dir: str
    launch_dir: str
    decisions: list[Decision] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not any(p.severity == "error" for p in self.problems)

    def to_json(self) -> dict:
        return {
            "recipe": self.resolved,
            "world_size": self.world_size,
            "precision": self.precision,
            "attention": self.attention,
            "trainer": self.trainer,
            "peft": self.peft,
            "quantization": self.quantization,
            "deepspeed": self.deepspeed,
            "accelerate": self.accelerate,
            "launch": self.launch,
            "memory": self.memory,
            "decisions": [{"what": d.what, "value": d.value, "why": d.why} for d in self.decisions],
            "problems": [{"field": ".".join(map(str, p.path)), "message": p.message, "rule": p.rule, "severity": p.severity} for p in self.problems],
        }
