"""What resolution produces: a Plan, its decisions and its problems.

The Plan is also the hand-off between the two sides of a run: the parent writes `Plan.to_json()` to
`OUTPUT_DIR/launch/plan.json`, and every training process reads it back with `Plan.from_json()` into the
same dataclass (the recipe validated again into a `Recipe`). `PLAN_VERSION` changes whenever the JSON's
shape does, so a training process never guesses at a plan written by another version.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Optional

from schemas import Recipe
from schemas.hardware import HardwareProfile
from schemas.problems import Problem

from .architecture import Architecture

PLAN_VERSION = 4  # 4: training.tf32 decided in the resolved recipe; per-epoch schedules, start_from, num_proc


class PlanFormatError(ValueError):
    """plan.json was written by another version of recipe, or is not a plan."""


@dataclass
class Decision:
    what: str
    value: Any
    why: str


@dataclass
class Plan:
    recipe: Recipe
    resolved: dict  # the recipe with defaults filled and every `auto` replaced by the decision
    world_size: int
    precision: str  # bf16 | fp16 | fp32: the arithmetic of forward and backward
    dtype: str  # the dtype the model's weights are loaded in
    attention: str
    micro_batch_size: int
    gradient_accumulation_steps: int
    gradient_checkpointing: bool
    zero: Optional[int]  # DeepSpeed ZeRO stage; None without DeepSpeed
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
            "version": PLAN_VERSION,
            "recipe": self.resolved,
            "world_size": self.world_size,
            "precision": self.precision,
            "dtype": self.dtype,
            "attention": self.attention,
            "micro_batch_size": self.micro_batch_size,
            "gradient_accumulation_steps": self.gradient_accumulation_steps,
            "gradient_checkpointing": self.gradient_checkpointing,
            "zero": self.zero,
            "offload": self.offload,
            "trainer": self.trainer,
            "peft": self.peft,
            "quantization": self.quantization,
            "deepspeed": self.deepspeed,
            "accelerate": self.accelerate,
            "launch": self.launch,
            "memory": self.memory,
            "hardware": self.hardware.model_dump(mode="json"),
            "architecture": asdict(self.architecture) if self.architecture is not None else None,
            "output_dir": self.output_dir,
            "launch_dir": self.launch_dir,
            "decisions": [{"what": d.what, "value": d.value, "why": d.why} for d in self.decisions],
            "problems": [
                {"field": p.field, "message": p.message, "rule": p.rule, "severity": p.severity} for p in self.problems
            ],
        }

    @classmethod
    def from_json(cls, data: Any) -> Plan:
        """The Plan that `to_json` wrote (the recipe is validated again; problems keep their dotted field)."""
        if not isinstance(data, dict) or "version" not in data:
            raise PlanFormatError("not a plan written by `recipe run` (no `version`)")
        if data["version"] != PLAN_VERSION:
            raise PlanFormatError(
                f"plan version {data['version']} was written by another version of recipe (this one reads "
                f"{PLAN_VERSION}); write the launch files again with `recipe run`"
            )
        arch = data["architecture"]
        return cls(
            recipe=Recipe.model_validate(data["recipe"]),
            resolved=data["recipe"],
            world_size=data["world_size"],
            precision=data["precision"],
            dtype=data["dtype"],
            attention=data["attention"],
            micro_batch_size=data["micro_batch_size"],
            gradient_accumulation_steps=data["gradient_accumulation_steps"],
            gradient_checkpointing=data["gradient_checkpointing"],
            zero=data["zero"],
            offload=data["offload"],
            trainer=data["trainer"],
            peft=data["peft"],
            quantization=data["quantization"],
            deepspeed=data["deepspeed"],
            accelerate=data["accelerate"],
            launch=data["launch"],
            memory=data["memory"],
            hardware=HardwareProfile.model_validate(data["hardware"]),
            architecture=Architecture(**arch) if arch is not None else None,
            output_dir=data["output_dir"],
            launch_dir=data["launch_dir"],
            decisions=[Decision(**d) for d in data["decisions"]],
            problems=[
                Problem(tuple(p["field"].split(".")), p["message"], p["rule"], p["severity"]) for p in data["problems"]
            ],
        )
