"""Keep the terminal for what matters during training: known library noise is kept out of it (and each other
warning shown once), while everything, noise included, goes to OUTPUT_DIR/logs/train-rankN.log.
`recipe run --verbose` shows everything in the terminal too."""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path

from runner.common.rundir import record_created

# Messages the libraries we pin print on every run that say nothing about the run (seen in real runs, or found
# in the installed libraries' sources for the paths we take: bitsandbytes 8-bit, gradient checkpointing).
NOISE = (
    r"`is_gradient_checkpointing` is deprecated",  # transformers 5 (called by TRL)
    r"`torch\.distributed\.(all_gather_into_tensor|reduce_scatter_tensor)` is deprecated",  # DeepSpeed's ZeRO calls
    r"Setting accelerator to CPU",  # DeepSpeed on a machine without a GPU
    r"MatMul8bitLt: inputs will be cast from",  # bitsandbytes 8-bit on CPU
    r"torch\.utils\.checkpoint: the use_reentrant parameter",
)
_NOISE = re.compile("|".join(NOISE))


class _NotNoise(logging.Filter):
    def __init__(self) -> None:
        super().__init__()
        self.seen: set[str] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        text = record.getMessage()
        if _NOISE.search(text):
            return False
        first_line = text.strip().splitlines()[0] if text.strip() else text
        if first_line in self.seen:  # each warning once in the terminal
            return False
        self.seen.add(first_line)
        return True


def open_no_follow(path: Path, mode: str = "a"):
    """`path` opened for appending (text, UTF-8), refusing a symlink in its place (ELOOP)."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW, 0o644)
    return os.fdopen(fd, mode, encoding="utf-8")


def configure(output_dir: str, verbose: bool) -> Path:
    """Route warnings and library logs: all to this process's log file, the useful ones to the terminal."""
    rank = os.environ.get("RANK", "0")
    log = Path(output_dir) / "logs" / f"train-rank{rank}.log"
    record_created(Path(output_dir), log.parent.name)
    log.parent.mkdir(parents=True, exist_ok=True)
    to_file = logging.StreamHandler(open_no_follow(log))  # a FileHandler would write through a link
    to_file.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s"))
    to_file.setLevel(logging.DEBUG)
    to_terminal = logging.StreamHandler()
    to_terminal.setLevel(logging.WARNING)
    if not verbose:
        to_terminal.addFilter(_NotNoise())
    logging.captureWarnings(True)  # warnings Python shows reach the log file (the terminal shows each once)
    libraries = ("transformers", "trl", "peft", "accelerate", "DeepSpeed", "datasets", "torch", "bitsandbytes")
    for name in ("py.warnings", *libraries):
        logger = logging.getLogger(name)
        logger.addHandler(to_file)
        logger.addHandler(to_terminal)
        logger.propagate = False
        if logger.level == logging.NOTSET or logger.level > logging.INFO:
            logger.setLevel(logging.INFO)
    runner_log = logging.getLogger("runner")  # the project's own records (a failure's traceback): the file only
    runner_log.addHandler(to_file)
    runner_log.propagate = False
    import torch

    if not torch.cuda.is_available():
        os.environ.setdefault("DS_ACCELERATOR", "cpu")  # DeepSpeed would otherwise announce it found no GPU
    if not verbose:
        os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")
        os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
        try:
            from transformers.utils import logging as hf_logging

            hf_logging.disable_progress_bar()
            import datasets

            datasets.disable_progress_bars()
        except ImportError:
            pass
    return log
