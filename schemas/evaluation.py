"""The `evaluation` section: what `recipe eval` (and a run that evaluates at its end) measures.

Two kinds of task. `lm-eval` runs a task of lm-evaluation-harness (a name from its registry, or a task YAML file)
on the model `recipe` loads. The built-in kinds read rows through the same `source:`/`format:`/`columns:` syntax
as the training data: `exact-match` (generated answers against the reference answers, TriviaQA's aliases
included), `preference` (does the model give the chosen answer a higher log-likelihood than the rejected one?) and
`win-rate` (a reward model scores the model's answers against the data's reference answers).
"""

from __future__ import annotations

from typing import Literal, Optional, Union

from pydantic import Field, model_validator

from .base import Section
from .datasets import FORMATS, DatasetSource
from .localpath import HubOrPath, TaskYamlPath

EVAL_KINDS = ("lm-eval", "exact-match", "preference", "win-rate")
# The format families each built-in kind reads (schemas.datasets.FORMATS): the rows that have what it needs.
KIND_FAMILIES = {
    "exact-match": ("prompt-completion",),  # a prompt and its reference answer (triviaqa's aliases, alpaca, ...)
    "preference": ("preference",),  # a prompt with a chosen and a rejected answer
    "win-rate": ("prompt-completion", "preference"),  # a prompt and a reference answer (the completion, or chosen)
}
TASK_NAME = r"^[A-Za-z0-9][A-Za-z0-9._-]*$"


class Generation(Section):
    """How answers are generated for `exact-match` and `win-rate` (and the harness's generative tasks)."""

    max_new_tokens: int = Field(64, gt=0, description="Longest answer in tokens.")
    temperature: float = Field(
        0.0, ge=0, description="Sampling temperature; 0 is greedy decoding (the same answer every time)."
    )
    top_p: float = Field(
        1.0,
        gt=0,
        le=1,
        description="Nucleus sampling: keep the smallest set of tokens with this "
        "much probability (with temperature > 0).",
    )
    seed: int = Field(0, description="Seed for sampling (with temperature > 0).")


class EvalTask(Section):
    """One evaluation task."""

    kind: Literal[EVAL_KINDS] = Field(  # type: ignore[valid-type]
        description="`lm-eval`: a task of lm-evaluation-harness (`pip install 'recipe[eval]'`). `exact-match`: "
        "generated answers against reference answers (exact match and token F1, after TriviaQA's normalisation; the "
        "first line of the answer counts). `preference`: the share of pairs whose chosen answer has the higher "
        "log-likelihood under the model, and the mean margin. `win-rate`: a reward model scores the model's answer "
        "and the data's reference answer; the share the model wins."
    )
    name: Optional[str] = Field(
        None,
        pattern=TASK_NAME,
        description="Names the task in tables and results; default the harness task's name, or the kind and the "
        "data file's name.",
    )
    task: Optional[TaskYamlPath] = Field(
        None,
        min_length=1,
        description="`lm-eval` only: a harness task or group name (e.g. `hellaswag`, `triviaqa`), or the path of a "
        "task YAML file (relative to the recipe file; its local `data_files` relative to the YAML file).",
    )
    data: Optional[DatasetSource] = Field(
        None,
        description="Built-in kinds only: the rows, as a `datasets` entry (`source`, `split`, `format`, `columns`, "
        "`limit`).",
    )
    reward_model: Optional[HubOrPath] = Field(
        None,
        description="`win-rate` only: the reward model (a reward run's output directory or a Hub id); default "
        "`objective.reward_model`.",
    )
    num_fewshot: Optional[int] = Field(
        None, ge=0, description="`lm-eval` only: few-shot examples; default `evaluation.num_fewshot`."
    )

    @model_validator(mode="after")
    def _fields_of_kind(self) -> "EvalTask":
        if self.kind == "lm-eval":
            if self.task is None:
                raise ValueError("kind `lm-eval` needs `task`: a harness task name or a task YAML file")
            if self.data is not None:
                raise ValueError("`data` is for the built-in kinds; kind `lm-eval` reads the data its YAML names")
        else:
            if self.data is None:
                raise ValueError(f"kind `{self.kind}` needs `data`: {{source, format}} of the rows to evaluate on")
            if self.task is not None:
                raise ValueError(f"`task` names an lm-evaluation-harness task; kind `{self.kind}` reads `data`")
            families = KIND_FAMILIES[self.kind]
            if self.data.spec.family not in families:
                fits = sorted(f for f, spec in FORMATS.items() if spec.family in families)
                raise ValueError(
                    f"kind `{self.kind}` reads {' or '.join(families)} rows; format `{self.data.format}` gives "
                    f"{self.data.spec.family} rows (formats that fit: {', '.join(fits)})"
                )
            if self.num_fewshot is not None:
                raise ValueError("`num_fewshot` is for `lm-eval` tasks")
        if self.reward_model is not None and self.kind != "win-rate":
            raise ValueError("`reward_model` is for `win-rate` tasks")
        return self

    @property
    def label(self) -> str:
        """The task's name in tables and results."""
        if self.name:
            return self.name
        if self.task is not None:
            stem = self.task.rsplit("/", 1)[-1]
            return stem.rsplit(".", 1)[0] if stem.endswith((".yaml", ".yml")) else stem
        source = self.data.source.partition(":")[2].rstrip("/").rsplit("/", 1)[-1]
        return f"{self.kind}-{source.split('.', 1)[0]}"


class Evaluation(Section):
    """What `recipe eval` measures, and whether `recipe run` evaluates when training ends."""

    tasks: list[EvalTask] = Field(default_factory=list, description="The tasks, in the order they run.")
    at_end: bool = Field(
        False,
        description="`recipe run` evaluates the trained model on `tasks` when training finishes (the tasks are "
        "checked before training starts).",
    )
    compare_base: bool = Field(
        False,
        description="Evaluate the base model too (as `recipe eval --base`): the table shows before and after.",
    )
    batch_size: int = Field(8, gt=0, description="Rows scored or generated at once.")
    limit: Optional[int] = Field(
        None, gt=0, description="At most this many rows per task (the first ones); default all."
    )
    num_fewshot: Optional[int] = Field(
        None, ge=0, description="Few-shot examples for `lm-eval` tasks; default each task's own."
    )
    chat_template: Union[Literal["auto"], bool] = Field(
        "auto",
        description="Render prompts through the chat template training used. `auto`: yes, except for `lm-eval` "
        "tasks of a model trained on plain text (`format: text`). `false`: plain text, the turns' contents one per "
        "line.",
    )
    generation: Generation = Field(default_factory=Generation, description="How answers are generated.")
    backend: Literal["transformers", "vllm"] = Field(
        "transformers",
        description="What generates answers for the built-in tasks: `transformers` (batched `generate`), or `vllm` "
        "(a GPU with vLLM installed; LoRA adapters and whole models).",
    )
