"""Model shapes and parameter counts, from a shipped table or a local config.json (never from weights)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Optional

from .modeltypes import ModelType, model_type

TABLE_FILE = Path(__file__).parent / "architectures.yaml"


@dataclass(frozen=True)
class Architecture:
    """The shape of a decoder-only language model: enough to count parameters and activations."""

    name: str
    model_type: str
    hidden_size: int
    num_hidden_layers: int
    vocab_size: int
    intermediate_size: int = 0
    num_attention_heads: int = 1
    num_key_value_heads: int = 0
    head_dim: int = 0
    tie_word_embeddings: bool = True
    max_position_embeddings: int = 0  # learned absolute positions (gpt2); 0 for rotary models
    state_size: int = 16  # mamba
    expand: int = 2  # mamba
    conv_kernel: int = 4  # mamba

    @property
    def facts(self) -> ModelType:
        """What the program knows about this model type (runner/plan/modeltypes.py)."""
        return model_type(self.model_type)

    @property
    def is_mamba(self) -> bool:
        return self.facts.state_space

    @property
    def gated_mlp(self) -> bool:
        return self.facts.gated_mlp

    @property
    def d_head(self) -> int:
        return self.head_dim or self.hidden_size // max(self.num_attention_heads, 1)

    @property
    def kv_heads(self) -> int:
        return self.num_key_value_heads or self.num_attention_heads

    @property
    def q_dim(self) -> int:
        return self.num_attention_heads * self.d_head

    @property
    def kv_dim(self) -> int:
        return self.kv_heads * self.d_head

    def linear_modules(self) -> dict[str, tuple[int, int]]:
        """Linear layers of one block: name -> (in_features, out_features)."""
        h = self.hidden_size
        if self.is_mamba:
            d_inner = self.expand * h
            dt_rank = -(-h // 16)
            return {
                "in_proj": (h, 2 * d_inner),
                "x_proj": (d_inner, dt_rank + 2 * self.state_size),
                "dt_proj": (dt_rank, d_inner),
                "out_proj": (d_inner, h),
            }
        i = self.intermediate_size or 4 * h
        qkv = self.facts.fused_qkv
        if qkv:
            if self.model_type == "gpt2":
                return {qkv: (h, 3 * h), "attn.c_proj": (h, h), "c_fc": (h, i), "mlp.c_proj": (i, h)}
            return {qkv: (h, 3 * h), "dense": (h, h), "dense_h_to_4h": (h, i), "dense_4h_to_h": (i, h)}
        modules = {
            "q_proj": (h, self.q_dim),
            "k_proj": (h, self.kv_dim),
            "v_proj": (h, self.kv_dim),
            "o_proj": (self.q_dim, h),
        }
        if self.gated_mlp:
            modules.update({"gate_proj": (h, i), "up_proj": (h, i), "down_proj": (i, h)})
        else:
            modules.update({"fc1": (h, i), "fc2": (i, h)})
        return modules

    def linear_groups(self) -> list[list[str]]:
        """The block's linear layers grouped by the tensor they read (q/k/v read the same normed input)."""
        if self.is_mamba or self.facts.fused_qkv:  # each layer reads its own input
            return [[m] for m in self.linear_modules()]
        mlp = [["gate_proj", "up_proj"], ["down_proj"]] if self.gated_mlp else [["fc1"], ["fc2"]]
        return [["q_proj", "k_proj", "v_proj"], ["o_proj"], *mlp]

    @property
    def linear_params_per_layer(self) -> int:
        return sum(a * b for a, b in self.linear_modules().values())

    @property
    def other_params_per_layer(self) -> int:
        """Norms and (mamba) convolution/state parameters of one block: not quantized by bitsandbytes."""
        h = self.hidden_size
        if self.is_mamba:
            d_inner = self.expand * h
            return d_inner * self.conv_kernel + d_inner * self.state_size + 2 * d_inner + h
        return 2 * h

    @property
    def embedding_params(self) -> int:
        return self.vocab_size * self.hidden_size + self.max_position_embeddings * self.hidden_size

    @property
    def lm_head_params(self) -> int:
        return 0 if self.tie_word_embeddings else self.vocab_size * self.hidden_size

    @property
    def quantizable_params(self) -> int:
        """Parameters bitsandbytes quantizes: the linear layers of the blocks (not embeddings, norms or the head)."""
        return self.num_hidden_layers * self.linear_params_per_layer

    @property
    def total_params(self) -> int:
        return (
            self.embedding_params
            + self.num_hidden_layers * (self.linear_params_per_layer + self.other_params_per_layer)
            + self.hidden_size
            + self.lm_head_params
        )

    @property
    def largest_layer_params(self) -> int:
        """The largest single module, as DeepSpeed's ZeRO-3 estimator counts it."""
        biggest_linear = max(a * b for a, b in self.linear_modules().values())
        return max(self.embedding_params, self.lm_head_params, biggest_linear)

    def lora_modules(self, targets: str | list[str]) -> tuple[list[str], list[str]]:
        """The block's linear layers an adapter with `targets` (`all-linear` or module names) wraps, and the names
        not recognised."""
        modules = self.linear_modules()
        if targets == "all-linear":
            return list(modules), []
        chosen = [m for m in modules if any(m == t or m.endswith("." + t) or m.split(".")[-1] == t for t in targets)]
        unknown = [t for t in targets if not any(m == t or m.split(".")[-1] == t for m in modules)]
        return chosen, unknown

    def lora_params(self, targets: str | list[str], r: int, dora: bool = False) -> tuple[int, list[str]]:
        """Trainable LoRA parameters for `targets` (`all-linear` or module names), and the names not recognised."""
        modules = self.linear_modules()
        chosen, unknown = self.lora_modules(targets)
        per_layer = sum(r * (modules[m][0] + modules[m][1]) + (modules[m][1] if dora else 0) for m in chosen)
        return self.num_hidden_layers * per_layer, unknown


def _from_config(name: str, cfg: dict) -> Architecture:
    def pick(*keys, default=None):
        for k in keys:
            if cfg.get(k) is not None:
                return cfg[k]
        return default

    text = cfg.get("text_config") if isinstance(cfg.get("text_config"), dict) else None
    if text:  # multimodal wrappers keep the language model's shape under text_config
        merged = {**text, "model_type": text.get("model_type", cfg.get("model_type", ""))}
        return _from_config(name, merged)
    hidden = pick("hidden_size", "n_embd", "d_model")
    layers = pick("num_hidden_layers", "n_layer", "num_layers")
    vocab = pick("vocab_size")
    if not (hidden and layers and vocab):
        raise ValueError("config.json lacks hidden_size / num_hidden_layers / vocab_size")
    return Architecture(
        name=name,
        model_type=str(cfg.get("model_type", "")),
        hidden_size=int(hidden),
        num_hidden_layers=int(layers),
        vocab_size=int(vocab),
        intermediate_size=int(pick("intermediate_size", "n_inner", "ffn_dim", default=0) or 0),
        num_attention_heads=int(pick("num_attention_heads", "n_head", default=1)),
        num_key_value_heads=int(pick("num_key_value_heads", default=0) or 0),
        head_dim=int(pick("head_dim", default=0) or 0),
        tie_word_embeddings=bool(pick("tie_word_embeddings", default=True)),
        max_position_embeddings=int(
            pick("n_positions", default=0)
            or (cfg.get("max_position_embeddings", 0) if cfg.get("model_type") == "gpt2" else 0)
        ),
        state_size=int(pick("state_size", default=16)),
        expand=int(pick("expand", default=2)),
        conv_kernel=int(pick("conv_kernel", default=4)),
    )


@lru_cache(maxsize=None)
def _raw_table() -> dict[str, dict]:
    """Every name in the table (lower-cased) -> its config fields."""
    from schemas.yamlsource import safe_load

    out = {}
    for key, entry in safe_load(TABLE_FILE.read_text(encoding="utf-8")).items():
        entry = dict(entry)
        ids = entry.pop("ids", [])
        entry["_key"] = key
        for ident in [key, *ids]:
            out[ident.lower()] = entry
    return out


@lru_cache(maxsize=None)
def _table() -> dict[str, Architecture]:
    return {ident: _from_config(entry["_key"], entry) for ident, entry in _raw_table().items()}


def config_fields(name_or_path: str) -> dict:
    """The config.json fields of a model: its local config.json, or its entry in the shipped table."""
    config = Path(name_or_path) / "config.json"
    if _is(config, "is_file"):
        return json.loads(config.read_text(encoding="utf-8"))
    entry = _raw_table().get(name_or_path.lower())
    if entry is None:
        raise ValueError(find_architecture(name_or_path)[1])
    return {k: v for k, v in entry.items() if k != "_key"}


def _is(path: Path, test: str) -> bool:
    """`path.is_file()` / `path.exists()`, False for a name the system cannot look up (too long, a NUL in it)."""
    try:
        return getattr(path, test)()
    except (OSError, ValueError):
        return False


def known_ids() -> list[str]:
    return sorted(_table())


def find_architecture(name_or_path: str) -> tuple[Optional[Architecture], str]:
    """The architecture of a model and where it came from; (None, reason) when it cannot be known offline."""
    path = Path(name_or_path)
    config = path / "config.json"
    if _is(config, "is_file"):
        try:
            return _from_config(name_or_path, json.loads(config.read_text(encoding="utf-8"))), f"read from {config}"
        except (ValueError, json.JSONDecodeError) as exc:
            return None, f"{config} could not be read: {exc}"
    arch = _table().get(name_or_path.lower())
    if arch is not None:
        return arch, f"shipped architecture table ({arch.name})"
    if _is(path, "exists"):
        return None, f"{name_or_path} has no config.json"
    return (
        None,
        f"'{name_or_path}' is not in the shipped architecture table and is not a local directory with config.json",
    )
