"""Training speed of chapter 8's ResNets in float32 and under bfloat16 autocast, on this CPU.

For each ResNet (depth, width 16) the script times SGD steps on random channels-last batches
(cross-entropy, the first steps untimed), float32 and bfloat16 autocast interleaved for a few
rounds, and keeps each one's best round (a busy machine can only slow a round down). With
`--without-bf16-units` it runs itself again in a subprocess with `ONEDNN_MAX_CPU_ISA=AVX512_CORE`,
which stops oneDNN, PyTorch's CPU convolution library, from using the AMX and AVX512-BF16
instructions: the same CPU then stands for one without bfloat16 hardware. Results, with the CPU
model and the load average, go to `benchmarks/results/bf16_speed.json`.

    python benchmarks/bf16_speed.py --without-bf16-units        # what benchmarks/README.md quotes
    python benchmarks/bf16_speed.py --depths 8 --seconds 1 --rounds 1 --json /tmp/bf16.json
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import subprocess
import sys
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch is imported (cifar2_race.py)

import torch

from common import REPO, cpu_model, load_average_span, ratio, write_json_atomically
from torchbook.models import resnet
from torchbook.datasets import CIFAR2_MEAN, CIFAR2_STD
from torchbook.engine import SETTINGS, steps_per_second

RESULTS = REPO / "benchmarks" / "results" / "bf16_speed.json"
NO_BF16_ISA = "AVX512_CORE"  # oneDNN's AVX-512 level without the bfloat16 instructions


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Depths, batch size, timing rounds and where to write the results."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--depths", type=int, nargs="+", default=[14, 20])
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--seconds", type=float, default=6.0, help="timed seconds per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--without-bf16-units", action="store_true",
                        help=f"also time with ONEDNN_MAX_CPU_ISA={NO_BF16_ISA} (a subprocess)")
    parser.add_argument("--json", type=Path, default=RESULTS)
    parser.add_argument("--print-only", action="store_true", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def images_per_second(model: torch.nn.Module, bf16: bool, batch_size: int, seconds: float) -> float:
    """The engine's training steps on one random batch for about `seconds`: images/s."""
    images = torch.randint(0, 256, (batch_size, 3, 32, 32), dtype=torch.uint8)
    labels = torch.randint(0, 10, (batch_size,))
    meta = {"settings": {**SETTINGS, "channels_last": True}, "mean": CIFAR2_MEAN, "std": CIFAR2_STD}
    cpu = torch.device("cpu")
    per_second = steps_per_second(model, images, labels, meta, cpu, bf16, steps=2)
    steps = max(2, round(per_second * seconds))
    return steps_per_second(model, images, labels, meta, cpu, bf16, steps) * batch_size


def cpu_bf16_hardware() -> str | None:
    """The CPU's bfloat16 units as torch reports them: "AMX", "AVX512-BF16" or None."""
    for name, check in (("AMX", "_is_amx_tile_supported"),
                        ("AVX512-BF16", "_is_avx512_bf16_supported")):
        if getattr(torch.cpu, check, lambda: False)():
            return name
    return None


def time_depths(args: argparse.Namespace) -> dict[str, dict[str, float]]:
    """Best-of-rounds float32 and bfloat16 images/s for each depth, and their ratio."""
    torch.manual_seed(0)
    speeds = {}
    for depth in args.depths:
        model = resnet(depth, 16, 10).to(memory_format=torch.channels_last).train()
        best = {False: 0.0, True: 0.0}
        for _ in range(args.rounds):
            for bf16 in (False, True):
                best[bf16] = max(best[bf16], images_per_second(model, bf16, args.batch_size,
                                                               args.seconds))
        speeds[f"resnet{depth}"] = {"float32": round(best[False]), "bfloat16": round(best[True]),
                                    "bf16_speedup": ratio(best[True], best[False])}
    return speeds


def time_without_bf16_units(argv: list[str]) -> dict:
    """The same timings in a subprocess whose oneDNN may not use AMX or AVX512-BF16."""
    env = {**os.environ, "ONEDNN_MAX_CPU_ISA": NO_BF16_ISA}
    command = [sys.executable, __file__, *argv, "--print-only"]
    result = subprocess.run(command, env=env, capture_output=True, text=True, check=True)
    return json.loads(result.stdout)


def main(argv: list[str] | None = None) -> dict:
    """Time float32 and bfloat16 here (and without bf16 units if asked); write and print them."""
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    own = [a for a in argv if a not in ("--without-bf16-units", "--print-only")]
    load_before = os.getloadavg()
    speeds = time_depths(args)
    if args.print_only:
        print(json.dumps(speeds))
        return speeds
    result = {"command": "python benchmarks/bf16_speed.py " + " ".join(argv),
              "date": dt.datetime.now().isoformat(timespec="seconds"), "torch": torch.__version__,
              "cpu_model": cpu_model(), "cpu_count": os.cpu_count(),
              "threads": torch.get_num_threads(), "bf16_hardware": cpu_bf16_hardware(),
              "batch_size": args.batch_size, "width": 16, "speeds": speeds}
    if args.without_bf16_units:
        result[f"speeds_with_ONEDNN_MAX_CPU_ISA={NO_BF16_ISA}"] = time_without_bf16_units(own)
    result["load_average"] = load_average_span(load_before)
    write_json_atomically(args.json, result)
    print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
