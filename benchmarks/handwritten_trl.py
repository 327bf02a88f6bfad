"""The tiny SFT and DPO recipes written by hand against TRL, with identical settings.

The baseline of runner_overhead.py.

accelerate launch benchmarks/handwritten_trl.py sft|dpo OUTPUT_DIR
"""

import json
import sys

import torch
from datasets import load_dataset
from peft import LoraConfig
from transformers import AutoModelForCausalLM, AutoTokenizer, BitsAndBytesConfig
from trl import DPOConfig, DPOTrainer, SFTConfig, SFTTrainer

kind, out = sys.argv[1], sys.argv[2]
tokenizer = AutoTokenizer.from_pretrained("assets/tiny-llama")
common = dict(
    output_dir=out,
    num_train_epochs=3,
    per_device_train_batch_size=8,
    per_device_eval_batch_size=8,
    gradient_accumulation_steps=1,
    learning_rate=3e-3,
    lr_scheduler_type="constant",
    logging_steps=5,
    eval_strategy="steps",
    eval_steps=20,
    eval_on_start=True,
    save_strategy="steps",
    save_steps=40,
    seed=7,
    data_seed=7,
    use_cpu=True,
    report_to=["none"],
    activation_checkpointing=False,
    max_length=64,
    bf16=False,
    fp16=False,
)
lora = LoraConfig(task_type="CAUSAL_LM", r=16, lora_alpha=32, lora_dropout=0.0, target_modules="all-linear")
if kind == "sft":
    data = load_dataset(
        "json", data_files={"train": "assets/data/messages-train.jsonl", "eval": "assets/data/messages-eval.jsonl"}
    )
    model = AutoModelForCausalLM.from_pretrained("assets/tiny-llama", dtype=torch.float32, attn_implementation="sdpa")
    trainer = SFTTrainer(
        model=model,
        args=SFTConfig(**common, packing=False),
        train_dataset=data["train"],
        eval_dataset=data["eval"],
        processing_class=tokenizer,
        peft_config=lora,
    )
else:
    data = load_dataset(
        "json", data_files={"train": "assets/data/preference-train.jsonl", "eval": "assets/data/preference-eval.jsonl"}
    )
    bnb = BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_use_double_quant=True,
        bnb_4bit_compute_dtype=torch.float32,
    )
    model = AutoModelForCausalLM.from_pretrained(
        "assets/tiny-llama",
        dtype=torch.float32,
        attn_implementation="sdpa",
        quantization_config=bnb,
        device_map={"": "cpu"},
    )
    trainer = DPOTrainer(
        model=model,
        args=DPOConfig(**common, beta=0.1, loss_type=["sigmoid"]),
        train_dataset=data["train"],
        eval_dataset=data["eval"],
        processing_class=tokenizer,
        peft_config=lora,
    )
trainer.train()
trainer.save_model(out)
with open(f"{out}/log_history.json", "w") as f:
    json.dump(trainer.state.log_history, f)
