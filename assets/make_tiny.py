"""Make the tiny offline model and the synthetic datasets the CPU recipes and tests train on.

    python assets/make_tiny.py        # rewrites assets/tiny-llama/ and assets/data/

Nothing is downloaded. The model is a 2-layer Llama with random weights (fixed seed), a
byte-level BPE tokenizer trained here on the synthetic corpus, and a ChatML chat template
that marks assistant turns with {% generation %} (for assistant-only loss). The data are
small facts ("What color is the banana?" -> "The banana is yellow.", preferred over an
unhelpful "I do not know.") written in the public formats the presets read, split into
train and held-out files, so tests can check that SFT loss falls and DPO/reward accuracy
rises on rows they did not train on.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

HERE = Path(__file__).resolve().parent
MODEL_DIR = HERE / "tiny-llama"
DATA_DIR = HERE / "data"
SEED = 1234

OBJECTS = {
    "banana": "yellow",
    "lemon": "yellow",
    "sun": "yellow",
    "corn": "yellow",
    "canary": "yellow",
    "sky": "blue",
    "ocean": "blue",
    "sapphire": "blue",
    "blueberry": "blue",
    "jeans": "blue",
    "grass": "green",
    "leaf": "green",
    "frog": "green",
    "lime": "green",
    "emerald": "green",
    "tomato": "red",
    "strawberry": "red",
    "ruby": "red",
    "cherry": "red",
    "firetruck": "red",
    "snow": "white",
    "milk": "white",
    "cloud": "white",
    "swan": "white",
    "pearl": "white",
    "coal": "black",
    "crow": "black",
    "night": "black",
    "ink": "black",
    "panther": "black",
    "carrot": "orange",
    "pumpkin": "orange",
    "tangerine": "orange",
    "apricot": "orange",
    "goldfish": "orange",
    "plum": "purple",
    "eggplant": "purple",
    "grape": "purple",
    "violet": "purple",
    "amethyst": "purple",
}
COLORS = sorted(set(OBJECTS.values()))
# Rejected and undesirable answers are unhelpful, like HH-RLHF's: a preference that holds for any question,
# so accuracy on held-out pairs measures what DPO, KTO and reward models learned.
UNHELPFUL = ["I do not know.", "No idea, sorry.", "I cannot answer that.", "Ask someone else.", "Why do you ask?"]
QUESTIONS = [
    "What color is the {o}?",
    "Which color does the {o} have?",
    "Tell me the color of the {o}.",
    "What is the color of a {o}?",
]
ANSWER = "The {o} is {c}."
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' }}"
    "{% if message['role'] == 'assistant' %}{% generation %}{{ message['content'] + '<|im_end|>' }}{% endgeneration %}"
    "{% else %}{{ message['content'] + '<|im_end|>' }}{% endif %}{{ '\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)
SPECIAL = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]


def examples(rng: random.Random) -> list[dict]:
    rows = []
    for obj, color in OBJECTS.items():
        for q in QUESTIONS:
            rows.append(
                {
                    "question": q.format(o=obj),
                    "answer": ANSWER.format(o=obj, c=color),
                    "wrong": rng.choice(UNHELPFUL),
                    "object": obj,
                    "color": color,
                }
            )
    rng.shuffle(rows)
    return rows


def write_jsonl(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")


def make_data() -> list[str]:
    rng = random.Random(SEED)
    rows = examples(rng)
    n_eval = len(rows) // 5
    splits = {"train": rows[n_eval:], "eval": rows[:n_eval]}
    for split, part in splits.items():
        write_jsonl(
            DATA_DIR / f"messages-{split}.jsonl",
            [
                {
                    "messages": [
                        {"role": "user", "content": r["question"]},
                        {"role": "assistant", "content": r["answer"]},
                    ]
                }
                for r in part
            ],
        )
        write_jsonl(
            DATA_DIR / f"preference-{split}.jsonl",
            [
                {
                    "prompt": [{"role": "user", "content": r["question"]}],
                    "chosen": [{"role": "assistant", "content": r["answer"]}],
                    "rejected": [{"role": "assistant", "content": r["wrong"]}],
                }
                for r in part
            ],
        )
        write_jsonl(
            DATA_DIR / f"hh-rlhf-{split}.jsonl",
            [
                {
                    "chosen": f"\n\nHuman: {r['question']}\n\nAssistant: {r['answer']}",
                    "rejected": f"\n\nHuman: {r['question']}\n\nAssistant: {r['wrong']}",
                }
                for r in part
            ],
        )
        unpaired = []
        for r in part:
            unpaired.append({"prompt": r["question"], "completion": r["answer"], "label": True})
            unpaired.append({"prompt": r["question"], "completion": r["wrong"], "label": False})
        write_jsonl(DATA_DIR / f"unpaired-{split}.jsonl", unpaired)
        write_jsonl(
            DATA_DIR / f"alpaca-{split}.jsonl",
            [{"instruction": r["question"], "input": "", "output": r["answer"]} for r in part],
        )
        write_jsonl(
            DATA_DIR / f"prompt-only-{split}.jsonl", [{"prompt": r["question"], "color": r["color"]} for r in part]
        )
        write_jsonl(  # TriviaQA's shape: the answer record accepts the sentence or the bare color
            DATA_DIR / f"triviaqa-{split}.jsonl",
            [
                {"question": r["question"], "answer": {"value": r["answer"], "aliases": [r["answer"], r["color"]]}}
                for r in part
            ],
        )
    (DATA_DIR / "text-train.txt").write_text(
        "\n".join(f"{r['question']} {r['answer']}" for r in splits["train"]) + "\n", encoding="utf-8"
    )
    (DATA_DIR / "text-eval.txt").write_text(
        "\n".join(f"{r['question']} {r['answer']}" for r in splits["eval"]) + "\n", encoding="utf-8"
    )
    corpus = [r["question"] + " " + r["answer"] + " " + r["wrong"] for r in rows]
    return corpus


def make_tokenizer(corpus: list[str]):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=320,
        special_tokens=SPECIAL,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(corpus + ["user assistant system\n"] * 5, trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<|endoftext|>", bos_token=None, unk_token=None
    )
    fast.chat_template = CHAT_TEMPLATE
    return fast


def make_model(tokenizer) -> None:
    import torch
    from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM

    torch.manual_seed(SEED)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        tie_word_embeddings=False,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        bos_token_id=None,
        dtype="float32",
    )
    model = LlamaForCausalLM(config)
    model.generation_config = GenerationConfig(
        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id, max_new_tokens=32
    )
    model.save_pretrained(MODEL_DIR, safe_serialization=True)
    tokenizer.save_pretrained(MODEL_DIR)


def main() -> None:
    corpus = make_data()
    tokenizer = make_tokenizer(corpus)
    make_model(tokenizer)
    size = sum(p.stat().st_size for p in MODEL_DIR.iterdir())
    print(f"wrote {MODEL_DIR} ({size / 1024:.0f} KiB) and {DATA_DIR}")


if __name__ == "__main__":
    main()
