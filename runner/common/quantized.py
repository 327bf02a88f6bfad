"""bitsandbytes' 4-bit layers on a CPU keep the weight layout the model trains with.

On a CPU with AVX512-BF16 (bitsandbytes' `has_avx512bf16()`), bitsandbytes 0.50's `Linear4bit` repacks its
weights in the first forward without gradients in eval mode (`_convert_weight_packed_for_cpu`) into the layout of
a fused bfloat16 inference kernel, and marks the quantization state `packing_format_for_cpu`. This program does
not want that layout anywhere:

- under DeepSpeed ZeRO-3 the repacked tensor lives only in the gathered copy of the parameter; when ZeRO-3
  releases and gathers it again it is the original layout under a state that says "repacked", so the next eval
  forward reads the weights wrongly and saving a checkpoint or the adapter fails (`AssertionError` in
  `_convert_weight_packed_for_cpu_inverse`);
- the fused kernel computes in bfloat16 whatever the compute dtype, so evaluation during and after training, and
  the merged model's comparison with "the quantized model as trained" (`recipe merge`), would measure other
  arithmetic than training's forward (which dequantizes and multiplies in the compute dtype) and differ between
  CPUs.

So every 4-bit model this program loads is told the CPU has no such kernel: its forward is the same on every CPU,
the one training runs, and its weights keep the layout ZeRO-3 shards and the checkpoint stores. On a GPU the flag
is never read (the repacking is for CPU tensors only).
"""

from __future__ import annotations

from typing import Any


def keep_training_layout(model: Any) -> int:
    """Turn off the CPU repacking of every bitsandbytes 4-bit layer of `model`; returns how many layers it holds.

    Weights already repacked (a model evaluated before this call) are unpacked first, as bitsandbytes itself does
    before moving them to another device.
    """
    layers = 0
    for module in model.modules():
        if not hasattr(module, "support_avx512bf16_for_cpu"):  # bitsandbytes.nn.Linear4bit and its subclasses
            continue
        layers += 1
        module.support_avx512bf16_for_cpu = False
        weight = getattr(module, "weight", None)
        state = getattr(weight, "quant_state", None)
        if state is not None and getattr(state, "packing_format_for_cpu", False):
            from bitsandbytes.functional import _convert_weight_packed_for_cpu_inverse

            weight.data, weight.quant_state = _convert_weight_packed_for_cpu_inverse(weight.data, state)
            module.quant_state = weight.quant_state
    return layers
