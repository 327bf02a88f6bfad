"""`recipe hardware`: the shipped profiles, and `--detect` to describe this machine as a profile."""

from __future__ import annotations

import argparse
import os
import shutil
from typing import Optional

from runner.cli.exits import EXIT_OK
from runner.cli.table import render_table


def cpu_ram_gb() -> float:
    try:
        pages, size = os.sysconf("SC_PHYS_PAGES"), os.sysconf("SC_PAGE_SIZE")
        return round(pages * size / 1024**3, 1)
    except (ValueError, OSError, AttributeError):
        return 8.0


def _nvidia_smi() -> Optional[list[dict]]:
    import subprocess  # only for --detect: `recipe validate` imports this module

    exe = shutil.which("nvidia-smi")
    if not exe:
        return None
    try:
        out = subprocess.run(
            [exe, "--query-gpu=name,memory.total,compute_cap", "--format=csv,noheader,nounits"],
            capture_output=True,
            text=True,
            timeout=20,
            check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    gpus = []
    for line in out.strip().splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) >= 3:
            try:
                gpus.append({"name": parts[0], "memory_gb": float(parts[1]) / 1024, "cc": float(parts[2])})
            except ValueError:
                continue
    return gpus or None


def _torch_gpus() -> Optional[list[dict]]:
    try:
        import torch  # only for --detect, and only when nvidia-smi is missing
    except ImportError:
        return None
    if not torch.cuda.is_available():
        return None
    gpus = []
    for i in range(torch.cuda.device_count()):
        p = torch.cuda.get_device_properties(i)
        gpus.append({"name": p.name, "memory_gb": p.total_memory / 1024**3, "cc": float(f"{p.major}.{p.minor}")})
    return gpus


def detect() -> tuple[dict, int]:
    """This machine as a profile (the fields a recipe's `hardware` section takes) and its GPU count."""
    gpus = _nvidia_smi() or _torch_gpus()
    ram = cpu_ram_gb()
    if not gpus:
        return {
            "description": f"this machine: {os.cpu_count()} CPU cores, no GPU found (nvidia-smi and torch.cuda)",
            "accelerator": "cpu",
            "gpu_memory_gb": 0,
            "compute_capability": None,
            "bf16": False,
            "cpu_ram_gb": ram,
        }, 1
    first = gpus[0]
    usable = round(first["memory_gb"] - 0.5, 2)  # the CUDA context takes its share
    return {
        "description": f"this machine: {len(gpus)} × {first['name']}",
        "accelerator": "cuda",
        "gpu_memory_gb": usable,
        "compute_capability": first["cc"],
        "bf16": first["cc"] >= 8.0,
        "cpu_ram_gb": ram,
    }, len(gpus)


def cmd_hardware(args: argparse.Namespace) -> int:
    import yaml

    from schemas import load_profile, profile_names

    if args.detect:
        profile, gpus = detect()
        print("# This machine as a hardware profile. Save it as schemas/profiles/NAME.yaml to share it, or paste the")
        print("# fields after `description` into a recipe's `hardware:` section (without `profile:`).")
        print(yaml.safe_dump(profile, sort_keys=False).rstrip())
        print(f"# GPUs found: {gpus} (hardware.gpus_per_node)")
        return EXIT_OK
    rows = []
    for name in profile_names():
        p = load_profile(name)
        cc = "-" if p.compute_capability is None else f"{p.compute_capability:.1f}"
        rows.append([name, f"{p.gpu_memory_gb:g}", cc, "yes" if p.bf16 else "no", f"{p.cpu_ram_gb:g}", p.description])
    print(render_table(rows, ["PROFILE", "GPU GIB", "CC", "BF16", "CPU RAM GIB", "DESCRIPTION"]))
    return EXIT_OK
