"""The tokenizer shortcut (runner.common.models.generic_tokenizer) loads exactly what AutoTokenizer loads."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from runner.common.models import GENERIC_TOKENIZER_MODEL_TYPES, generic_tokenizer, load_tokenizer

ROOT = Path(__file__).resolve().parent.parent
TINY = ROOT / "assets" / "tiny-llama"
SAMPLE = [
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": "Name a colour, café-style: 🙂"},
    {"role": "assistant", "content": "Blue."},
]


def _tokenizer_dir(tmp_path: Path, model_type: str, **declared) -> Path:
    d = tmp_path / model_type
    d.mkdir()
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(TINY / name, d / name)
    config = json.loads((d / "tokenizer_config.json").read_text())
    config.update(declared)
    (d / "tokenizer_config.json").write_text(json.dumps(config))
    (d / "config.json").write_text(json.dumps({"model_type": model_type}))
    return d


def test_no_type_that_transformers_overrides_is_taken_as_generic():
    from transformers.models.auto.tokenization_auto import MODELS_WITH_INCORRECT_HUB_TOKENIZER_CLASS

    assert not GENERIC_TOKENIZER_MODEL_TYPES & set(MODELS_WITH_INCORRECT_HUB_TOKENIZER_CLASS)


@pytest.mark.parametrize("model_type", sorted(GENERIC_TOKENIZER_MODEL_TYPES))
@pytest.mark.parametrize("declared", ["TokenizersBackend", "PreTrainedTokenizerFast"])
def test_shortcut_matches_auto_tokenizer(tmp_path, model_type, declared):
    from transformers import AutoTokenizer

    d = _tokenizer_dir(tmp_path, model_type, tokenizer_class=declared)
    assert generic_tokenizer(str(d))
    auto = AutoTokenizer.from_pretrained(str(d))
    ours = load_tokenizer(str(d), keep_template=True)
    assert type(ours) is type(auto)
    text = "Name a colour, café-style: 🙂\nsecond line"
    assert ours(text)["input_ids"] == auto(text)["input_ids"]
    assert ours.all_special_tokens == auto.all_special_tokens


def test_other_tokenizers_go_through_auto_tokenizer(tmp_path):
    assert not generic_tokenizer(str(_tokenizer_dir(tmp_path, "qwen2")))  # transformers substitutes its own class
    assert not generic_tokenizer(str(_tokenizer_dir(tmp_path, "llama", auto_map={"AutoTokenizer": ["x", "y"]})))
    assert not generic_tokenizer(str(_tokenizer_dir(tmp_path, "mistral", tokenizer_class="LlamaTokenizer")))
    assert not generic_tokenizer("meta-llama/Meta-Llama-3-8B")  # not local


def test_the_parent_does_not_import_torch_for_the_tiny_tokenizer():
    code = (
        "import sys; from runner.common.models import load_tokenizer; "
        f"t = load_tokenizer({str(TINY)!r}); t.apply_chat_template({SAMPLE!r}, tokenize=True); "
        "print('torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert out.stdout.strip() == "False", out.stderr[-2000:]


@pytest.mark.parametrize(
    "template",
    [
        "{% generation %}x{% endgeneration %}",
        "{%- generation -%}x{%- endgeneration %}",
        "{%-generation%}",
        "{% if x %}generation{% endif %}",
        "",
        {"default": "{% generation %}", "tool_use": ""},
        {"default": "plain", "tool_use": "{% generation %}"},
        *(p.read_text() for p in sorted((ROOT / "runner/templates").glob("*.jinja"))),
    ],
)
def test_generation_marker_test_agrees_with_trl(template):
    from trl.chat_template_utils import has_generation_markers as trl_markers

    from runner.run.preflight import has_generation_markers

    assert has_generation_markers(template) == trl_markers(template)


@pytest.mark.parametrize("recipe", ["recipes/tiny/sft-lora.yaml", "recipes/tiny/dpo-qlora.yaml"])
def test_the_preflight_of_a_tiny_recipe_imports_no_torch(recipe, tmp_path):
    """What `recipe run` does before launching stays light: torch is imported by the training processes."""
    code = (
        "import sys; from runner.cli import load_and_plan; from runner.plan import probe_packages; "
        "from runner.run.preflight import preflight; "
        f"loaded, plan = load_and_plan({recipe!r}, ['output.dir={tmp_path / 'out'}']); "
        "problems = preflight(plan, probe_packages(), overwrite=False, resume=False); "
        "print(problems, 'torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert out.stdout.strip() == "[] False", out.stderr[-2000:]
