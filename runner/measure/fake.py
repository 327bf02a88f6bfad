"""Stand-ins for the kernels that have no fake-tensor implementation, each allocating what the GPU kernel does.

- bitsandbytes' 4-bit `Linear4bit` (CUDA/CPU kernels only): a frozen linear whose weight is stored as uint8, two
  values per byte, with its absmax constants; each call dequantizes the whole weight into a temporary of the compute
  dtype (bitsandbytes' `MatMul4Bit` does the same, forward and backward) and saves only its input.
- Dropout: on CUDA, `F.dropout` is `native_dropout`, which keeps a 1-byte mask; the CPU path keeps a mask of the
  input's dtype. The measurement uses the CUDA path. Attention dropout: CUDA's flash and memory-efficient sdpa
  kernels apply it inside the kernel (no mask kept, the backward regenerates it); on CPU a dropout probability
  sends sdpa to the math kernel, which keeps the [heads, length, length] probabilities. The measurement calls sdpa
  without it.
- TRL's fused LM head: on CUDA a Triton kernel folds each `[tokens, vocab chunk]` tile into running statistics in
  place, and the backward accumulates its gradient products into float32 with `addmm(out_dtype=float32)`; on CPU the
  torch fallback makes float32 copies of the tile and of the weight chunk. The measurement allocates what CUDA does.
- `MemTracker` hooks a gradient hook on every parameter the model touches, which fails on frozen ones: they get
  none (they never have a gradient).
"""

from __future__ import annotations

import contextlib
from typing import Any, Iterator

import torch
from torch import nn
from torch.distributed._tools.mem_tracker import MemTracker


class _NoHook:
    def remove(self) -> None:
        pass


class Tracker(MemTracker):
    """torch's MemTracker, with no gradient hooks on frozen parameters, and the root module callable more than
    once (the next step, or DPO's reference forward through the same model): each call is tracked afresh."""

    def _pre_fw_hook(self, module: nn.Module, inputs: Any) -> None:
        if module in self.memory_tracking and not self._mod_tracker.is_bw:
            if set(self._mod_tracker.parents) - {self._mod_tracker.get_known_fqn(module)} == {"Global"}:
                del self.memory_tracking[module]
        super()._pre_fw_hook(module, inputs)

    def _update_peak_stats(self, peak_state: Any) -> None:
        # Only the global peak: MemTracker also updates every active module's own peak on every operation, which
        # costs (operations × modules) and makes a full-size model take minutes.
        for dev, snap in self._curr_mem_snap.items():
            if self._peak_mem.get(dev, 0) < snap["Total"]:
                self._peak_mem[dev] = snap["Total"]
                self._peak_mem_snap[dev] = dict(snap)

    def track_frozen(self, model: nn.Module) -> None:
        for p in model.parameters():
            if not p.requires_grad:
                self._param_to_grad_hook_handles[p] = (_NoHook(), _NoHook())


def absmax_bytes(numel: int, double_quant: bool) -> int:
    """bitsandbytes' quantization constants: one fp32 absmax per block of 64, or (double quantization) one byte per
    block plus an fp32 constant per 256 blocks and the 256-entry code."""
    blocks = -(-numel // 64)
    if not double_quant:
        return 4 * blocks
    return blocks + 4 * -(-blocks // 256) + 4 * 256


class _Dequantized(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, packed, out_features, in_features, dtype):
        ctx.shape, ctx.dtype = (out_features, in_features), dtype
        ctx.save_for_backward(packed)
        weight = torch.empty(out_features, in_features, dtype=dtype, device=x.device)  # dequantized, freed after
        return torch.nn.functional.linear(x.to(dtype), weight)

    @staticmethod
    def backward(ctx, grad):
        (packed,) = ctx.saved_tensors
        weight = torch.empty(*ctx.shape, dtype=ctx.dtype, device=grad.device)
        return grad @ weight, None, None, None, None


class LinearQuantized(nn.Linear):
    """A frozen linear layer stored as bitsandbytes stores 4-bit (or 8-bit) weights (an `nn.Linear`, so PEFT wraps
    it): 4-bit values packed into `storage` (`bnb_4bit_quant_storage`) with their absmax constants, or int8 values
    with one float32 scale per row."""

    def __init__(
        self, linear: nn.Linear, compute_dtype: torch.dtype, storage: torch.dtype, double_quant: bool, bits: int = 4
    ):
        nn.Module.__init__(self)
        self.in_features, self.out_features = linear.in_features, linear.out_features
        numel = self.in_features * self.out_features
        device = linear.weight.device
        storage_bytes = torch.empty((), dtype=storage).element_size()
        values = numel // 2 if bits == 4 else numel
        self.weight = nn.Parameter(
            torch.empty(values // storage_bytes, 1, dtype=storage, device=device), requires_grad=False
        )
        constants = absmax_bytes(numel, double_quant) if bits == 4 else 4 * self.out_features
        self.register_buffer("absmax", torch.empty(constants, dtype=torch.uint8, device=device))
        self.bias = linear.bias
        self.compute_dtype = compute_dtype

    @property
    def W_q(self) -> torch.Tensor:  # noqa: N802 - the attribute PEFT's `dequantize_module_weight` looks for
        return self.weight

    def dequantize(self) -> torch.Tensor:
        """What DoRA's weight norm dequantizes each forward: the whole weight in the compute dtype."""
        return torch.empty(self.out_features, self.in_features, dtype=self.compute_dtype, device=self.weight.device)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = _Dequantized.apply(x, self.weight, self.out_features, self.in_features, self.compute_dtype)
        return out if self.bias is None else out + self.bias.to(out.dtype)


def quantize(model: nn.Module, skip: set[str], compute_dtype, storage, double_quant: bool, bits: int) -> None:
    """Replace the linear layers bitsandbytes would quantize (all but those named in `skip`, e.g. the LM head)."""
    for module in list(model.modules()):
        for child_name, child in list(module.named_children()):
            if type(child) is nn.Linear and child_name not in skip:
                setattr(module, child_name, LinearQuantized(child, compute_dtype, storage, double_quant, bits))


class StateSizedOptimizer(torch.optim.Optimizer):
    """A bitsandbytes optimizer's footprint: its states allocated at the first step, updated in place after."""

    def __init__(self, params, state_bytes: float):
        super().__init__(params, {"lr": 0.0})
        self.state_bytes = state_bytes

    @torch.no_grad()
    def step(self, closure=None):
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is not None and not self.state[p]:
                    self.state[p]["state"] = torch.empty(int(p.numel() * self.state_bytes), dtype=torch.uint8)


def _cuda_dropout(input, p=0.5, training=True, inplace=False):
    if not training or p == 0:
        return input
    return torch.native_dropout(input, p, True)[0]


_sdpa = torch.nn.functional.scaled_dot_product_attention


def _sdpa_cuda_like(query, key, value, attn_mask=None, dropout_p=0.0, **kwargs):
    """sdpa as CUDA runs it: attention dropout inside the kernel (no mask tensor), and a boolean mask turned into an
    additive one of the query's dtype per call (ATen's `convert_boolean_attn_mask`), which the memory-efficient
    kernel keeps for its backward."""
    if attn_mask is not None and attn_mask.dtype == torch.bool:
        attn_mask = torch.zeros(attn_mask.shape, dtype=query.dtype).masked_fill(~attn_mask, float("-inf"))
    return _sdpa(query, key, value, attn_mask=attn_mask, **kwargs)


def _in_place(*args, **kwargs):
    """The CUDA kernels' footprint: they read the tile and write per-token statistics or accumulate into float32
    buffers already allocated, allocating nothing."""


@contextlib.contextmanager
def cuda_like() -> Iterator[None]:
    """Dropout with 1-byte masks, and TRL's fused LM head folding its tiles in place, for the duration."""
    patches: list[tuple[Any, str, Any]] = [
        (torch.nn.functional, "dropout", _cuda_dropout),
        (torch.nn.functional, "scaled_dot_product_attention", _sdpa_cuda_like),
    ]
    try:
        from trl.kernels import chunked_logprob
    except ImportError:  # an older TRL without the fused head: nothing to patch
        chunked_logprob = None
    if chunked_logprob is not None:
        patches += [(chunked_logprob, name, _in_place) for name in ("_forward_tile", "_backward_tile", "_addmm_fp32")]
    saved = [(obj, name, getattr(obj, name)) for obj, name, _ in patches]
    try:
        for obj, name, value in patches:
            setattr(obj, name, value)
        yield
    finally:
        for obj, name, value in saved:
            setattr(obj, name, value)
