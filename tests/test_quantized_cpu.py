"""bitsandbytes' two CPU paths for 4-bit layers, each forced whatever this CPU is: with AVX512-BF16 detected,
bitsandbytes 0.50 repacks a layer's weights in its first eval forward without gradients (for a fused bfloat16
kernel); without, it never does. Every 4-bit model this program loads keeps the layout it trains with
(runner/common/quantized.py), so it computes and saves the same way on both.

What runs here: the detection (forced), the repacking and its inverse (plain torch), the state-dict save, and
ZeRO-3's release and gather of a parameter (emulated: the gathered copy is replaced by the partition's bytes).
What cannot run on a CPU without AVX512-BF16: the fused kernel itself (`gemv_4bit_inference_cpu_*_bf16` in
libbitsandbytes_cpu uses `vdpbf16ps`), which bitsandbytes registers only where the CPU has it; over repacked
weights an eval forward then runs the default kernel.
"""

from __future__ import annotations

import pytest

from conftest import ROOT

TINY = ROOT / "assets" / "tiny-llama"
QUANTIZATION = {
    "class": "transformers.BitsAndBytesConfig",
    "args": {
        "load_in_4bit": True,
        "bnb_4bit_quant_type": "nf4",
        "bnb_4bit_use_double_quant": True,
        "bnb_4bit_compute_dtype": "float32",
        "bnb_4bit_quant_storage": "bfloat16",  # as under ZeRO-3 (the load dtype)
    },
}
PATHS = {"avx512bf16": True, "plain": False}


@pytest.fixture(params=sorted(PATHS))
def cpu_path(request, monkeypatch):
    """bitsandbytes' 4-bit layers see a CPU with (avx512bf16) or without (plain) AVX512-BF16."""
    import bitsandbytes.nn.modules as modules

    monkeypatch.setattr(modules, "has_avx512bf16", lambda: PATHS[request.param])
    return request.param


def same_bytes(a, b) -> bool:
    """Packed 4-bit weights stored as bfloat16 hold NaN patterns: compare their bytes, not their values."""
    import torch

    return a.shape == b.shape and torch.equal(a.contiguous().view(torch.uint8), b.contiguous().view(torch.uint8))


def four_bit(model) -> list:
    return [m for m in model.modules() if type(m).__name__ == "Linear4bit"]


def raw_model():
    """The tiny Llama in 4-bit straight from transformers, as bitsandbytes leaves it."""
    from transformers import AutoModelForCausalLM

    from runner.common.models import quantization_config, torch_dtype

    config = quantization_config(QUANTIZATION)
    return AutoModelForCausalLM.from_pretrained(TINY, dtype=torch_dtype("float32"), quantization_config=config)


def eval_logits(model):
    import torch

    ids = torch.tensor([[1, 17, 42, 99, 7, 3, 250, 11]])
    model.eval()
    with torch.no_grad():
        return model(input_ids=ids).logits


def test_bitsandbytes_repacks_in_eval_only_where_it_detects_avx512bf16(cpu_path):
    """The forced detection reaches the layers: left alone, an eval forward repacks exactly on the avx512bf16 path."""
    model = raw_model()
    layers = four_bit(model)
    assert layers and all(m.support_avx512bf16_for_cpu is PATHS[cpu_path] for m in layers)
    eval_logits(model)
    repacked = [getattr(m.weight.quant_state, "packing_format_for_cpu", False) for m in layers]
    assert all(repacked) if cpu_path == "avx512bf16" else not any(repacked)


def test_a_loaded_4bit_model_keeps_its_layout_and_computes_what_training_does(cpu_path):
    """load_model: no layer repacks on either path; the eval forward equals the train-mode forward (the arithmetic
    the adapter learned on), and the saved bytes equal the quantized weights."""
    import torch

    from runner.common.models import load_model

    model = load_model(str(TINY), dtype="float32", quantization=QUANTIZATION)
    layers = four_bit(model)
    before = {id(m): m.weight.data.clone() for m in layers}
    assert layers and not any(m.support_avx512bf16_for_cpu for m in layers)
    model.train()
    ids = torch.tensor([[1, 17, 42, 99, 7, 3, 250, 11]])
    with torch.no_grad():
        trained_way = model(input_ids=ids).logits
    evaluated = eval_logits(model)
    assert not any(getattr(m.weight.quant_state, "packing_format_for_cpu", False) for m in layers)
    assert torch.equal(evaluated, trained_way)
    assert all(same_bytes(m.weight.data, before[id(m)]) for m in layers)
    state = model.state_dict()
    assert all(same_bytes(state[f"{n}.weight"], before[id(m)]) for n, m in model.named_modules() if m in layers)


def zero3_release_and_gather(layer, partition) -> None:
    """What ZeRO-3 does to a parameter between two uses: the gathered copy is dropped, and gathered again from the
    partitions (which hold the bytes as the engine sharded them, before any forward)."""
    layer.weight.data = partition.clone()


def test_under_zero3_a_repacked_layer_cannot_be_saved_and_a_kept_one_can(cpu_path):
    """The failure on AVX512-BF16 CPUs, reproduced in one process: repacked during the evaluation, gathered again
    from its shard, the layer's state says "repacked" over bytes that are not, and saving asserts. A layer of a
    model from load_model never gets there, on either path."""
    from runner.common.models import load_model
    from runner.common.quantized import keep_training_layout

    raw = raw_model()
    layer = four_bit(raw)[0]
    partition = layer.weight.data.clone()
    eval_logits(raw)
    zero3_release_and_gather(layer, partition)
    if cpu_path == "avx512bf16":
        with pytest.raises(AssertionError):
            layer.state_dict()
    else:
        layer.state_dict()

    kept = load_model(str(TINY), dtype="float32", quantization=QUANTIZATION)
    layer = four_bit(kept)[0]
    partition = layer.weight.data.clone()
    eval_logits(kept)
    zero3_release_and_gather(layer, partition)
    assert set(layer.state_dict()) >= {"weight", "weight.absmax", "weight.quant_map"}
    assert keep_training_layout(kept) == len(four_bit(kept))


def test_layers_repacked_before_the_fix_are_unpacked_to_the_same_bytes(cpu_path):
    """keep_training_layout on a model already evaluated: repacked layers get their original bytes and state back."""
    import torch

    from runner.common.quantized import keep_training_layout

    model = raw_model()
    layers = four_bit(model)
    before = {id(m): (m.weight.data.clone(), m.weight.quant_state.absmax.clone()) for m in layers}
    eval_logits(model)
    assert keep_training_layout(model) == len(layers)
    for m in layers:
        data, absmax = before[id(m)]
        assert not getattr(m.weight.quant_state, "packing_format_for_cpu", False)
        assert same_bytes(m.weight.data, data) and m.weight.data.dtype == torch.bfloat16
        assert m.weight.quant_state.nested and m.weight.quant_state.absmax.shape == absmax.shape
