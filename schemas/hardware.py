"""Hardware: the shipped profiles (YAML data in `profiles/`) and the recipe's `hardware` section."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal, Optional

from pydantic import Field, field_validator, model_validator

from .base import Section
from .diagnostics import did_you_mean

PROFILES_DIR = Path(__file__).parent / "profiles"


class HardwareProfile(Section):
    """One machine type: what a node of it offers to a training run."""

    name: str = Field(description="Profile name, e.g. `a100-80gb`.")
    description: str = Field("", description="What the machine is, in a sentence.")
    accelerator: Literal["cuda", "cpu"] = Field(description="`cuda` for NVIDIA GPUs, `cpu` for no accelerator.")
    gpu_memory_gb: float = Field(ge=0, description="Memory of one GPU usable by a process, in GiB (0 on `cpu`).")
    compute_capability: Optional[float] = Field(
        description="CUDA compute capability of the GPU, e.g. 8.0 for A100, 8.9 for Ada, 9.0 for Hopper; null on `cpu`."
    )
    bf16: bool = Field(description="Whether the GPU computes in bfloat16 natively (compute capability 8.0 or newer).")
    cpu_ram_gb: float = Field(gt=0, description="CPU memory of one node, in GiB (for offload and data loading).")

    @property
    def is_gpu(self) -> bool:
        return self.accelerator == "cuda"


@lru_cache(maxsize=None)
def profile_names() -> tuple[str, ...]:
    return tuple(sorted(p.stem for p in PROFILES_DIR.glob("*.yaml")))


@lru_cache(maxsize=None)
def load_profile(name: str) -> HardwareProfile:
    """Read a shipped profile. Raises KeyError for an unknown name."""
    from .yamlsource import safe_load

    path = PROFILES_DIR / f"{name}.yaml"
    if name not in profile_names():
        raise KeyError(name)
    data = safe_load(path.read_text(encoding="utf-8"))
    return HardwareProfile.model_validate({"name": name, **data})


_OVERRIDABLE = ("accelerator", "gpu_memory_gb", "compute_capability", "bf16", "cpu_ram_gb")


class Hardware(Section):
    """Where the run trains: a shipped profile (optionally overridden inline), how many GPUs and how to shard."""

    profile: Optional[str] = Field(
        None,
        description="A shipped hardware profile (see `recipe hardware`), e.g. `a100-80gb`. "
        "When omitted, `accelerator`, `gpu_memory_gb`, `compute_capability`, `bf16` and "
        "`cpu_ram_gb` must be given inline.",
    )
    accelerator: Optional[Literal["cuda", "cpu"]] = Field(None, description="Overrides the profile's accelerator.")
    gpu_memory_gb: Optional[float] = Field(
        None, ge=0, description="Overrides the profile's usable memory per GPU, in GiB."
    )
    compute_capability: Optional[float] = Field(
        None, ge=3.0, description="Overrides the profile's CUDA compute capability."
    )
    bf16: Optional[bool] = Field(None, description="Overrides whether the GPU supports bfloat16.")
    cpu_ram_gb: Optional[float] = Field(None, gt=0, description="Overrides the CPU memory of one node, in GiB.")
    gpus_per_node: int = Field(
        1, ge=1, le=64, description="Training processes per node: one per GPU (on `cpu`, the number of CPU processes)."
    )
    nodes: int = Field(1, ge=1, le=4096, description="Number of nodes (machines).")
    zero: Literal["auto", "none", 0, 1, 2, 3] = Field(
        "auto",
        description="DeepSpeed ZeRO stage. `auto` picks the least sharding that fits the memory (no DeepSpeed when one "
        "process suffices); `none` runs without DeepSpeed; 0 is DeepSpeed without sharding; 1 shards optimizer states, "
        "2 also gradients, 3 also parameters.",
    )
    offload: Literal["auto", "none", "optimizer", "all"] = Field(
        "auto",
        description="DeepSpeed offload to CPU memory: `optimizer` moves optimizer states (ZeRO 1-3), `all` also "
        "parameters (ZeRO-3 only). `auto` offloads only when nothing else fits.",
    )
    distributed_timeout_minutes: int = Field(
        30,
        ge=1,
        le=24 * 60,
        description="How long a process waits for the others at a collective operation before the run fails "
        "(transformers' `ddp_timeout`, 30 minutes by default). Raise it when one process does long work the others "
        "wait for, such as tokenizing a large dataset or saving a large checkpoint.",
    )

    @field_validator("profile")
    @classmethod
    def _known_profile(cls, value: Optional[str]) -> Optional[str]:
        if value is not None and value not in profile_names():
            raise ValueError(
                f"unknown hardware profile '{value}'.{did_you_mean(value, profile_names())} "
                f"Shipped profiles: {', '.join(profile_names())}; or leave `profile` out and describe the GPU inline"
            )
        return value

    @model_validator(mode="after")
    def _complete(self) -> "Hardware":
        if self.profile is None:
            missing = [f for f in _OVERRIDABLE if getattr(self, f) is None and f != "compute_capability"]
            if self.accelerator == "cuda" and self.compute_capability is None:
                missing.append("compute_capability")
            if missing:
                raise ValueError(
                    "name a `profile` (see `recipe hardware`) or give these fields inline: " + ", ".join(missing)
                )
        return self

    def resolved_profile(self) -> HardwareProfile:
        """The named profile with this section's inline overrides applied."""
        if self.profile is not None:
            base = load_profile(self.profile).model_dump()
        else:
            base = {"name": "inline", "description": "described inline in the recipe", "compute_capability": None}
        for name in _OVERRIDABLE:
            value = getattr(self, name)
            if value is not None:
                base[name] = value
        if base.get("accelerator") == "cpu":
            base["gpu_memory_gb"] = base.get("gpu_memory_gb") or 0
        return HardwareProfile.model_validate(base)

    @property
    def world_size(self) -> int:
        return self.gpus_per_node * self.nodes
