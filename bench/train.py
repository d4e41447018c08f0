"""Training-step throughput of the pre-training model (forward + backward + AdamW step).

Usage: ``python bench/train.py [--steps 5] [--warmup 2] [--gpu-batch 64]``

CPU: samples/s of ``tiny`` and ``base`` at the paper geometry (W=50, P=50, C=5) on a synthetic
batch, float32. CUDA (when available): samples/s of ``base`` under bf16 autocast, and model FLOPs
utilisation (MFU) = samples/s × ``model_flops_per_sample`` / the device's measured bf16 matmul peak
(timed on a large ``torch.matmul``). The last line printed is one JSON object with every figure.
"""

from __future__ import annotations

import argparse
import json
import platform
import time

import torch

from hicmix.model import (
    MixHiC,
    ModelGeometry,
    count_parameters,
    model_config,
    model_flops_per_sample,
    parameter_groups,
    synthetic_batch,
)

GEOMETRY = ModelGeometry(window_bins=50, positions_per_bin=50, n_channels=5)
CPU_BATCH = {"tiny": 16, "base": 2}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def train_step_rate(
    size: str,
    batch_size: int,
    device: torch.device,
    steps: int,
    warmup: int,
    dtype: torch.dtype | None = None,
) -> dict:
    """Samples/s of full training steps (after ``warmup`` untimed steps)."""
    torch.manual_seed(0)
    model = MixHiC(GEOMETRY, model_config(size)).to(device).train()
    opt = torch.optim.AdamW(parameter_groups(model, 1e-6), lr=1e-4, fused=device.type == "cuda")
    batch = synthetic_batch(GEOMETRY, batch_size, seed=0, device=device)

    def step() -> None:
        with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
            losses = model.pretrain_losses(batch)
        total = 0.5 * (losses["contrastive"] + losses["orthogonality"]) + 0.5 * losses["mapping"]
        opt.zero_grad(set_to_none=True)
        total.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        model.clamp_temperature_()

    for _ in range(warmup):
        step()
    _sync(device)
    started = time.perf_counter()
    for _ in range(steps):
        step()
    _sync(device)
    seconds = time.perf_counter() - started
    return {
        "size": size,
        "batch": batch_size,
        "steps": steps,
        "parameters": count_parameters(model),
        "s_per_step": seconds / steps,
        "samples_per_s": steps * batch_size / seconds,
    }


def bf16_matmul_peak(device: torch.device, n: int = 8192, repeats: int = 20) -> float:
    """Measured bf16 matmul throughput (FLOP/s) on an n×n×n product."""
    a = torch.randn(n, n, device=device, dtype=torch.bfloat16)
    b = torch.randn(n, n, device=device, dtype=torch.bfloat16)
    for _ in range(3):
        a @ b
    _sync(device)
    started = time.perf_counter()
    for _ in range(repeats):
        a @ b
    _sync(device)
    return 2 * n**3 * repeats / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--gpu-batch", type=int, default=64)
    args = parser.parse_args()

    cpu = torch.device("cpu")
    result: dict = {
        "geometry": GEOMETRY.to_dict(),
        "torch": torch.__version__,
        "cpu_threads": torch.get_num_threads(),
        "machine": platform.machine(),
        "cpu": {},
        "cuda": None,
    }
    for size, batch in CPU_BATCH.items():
        figures = train_step_rate(size, batch, cpu, args.steps, args.warmup)
        result["cpu"][size] = figures
        print(f"cpu {size}: {figures['samples_per_s']:.2f} samples/s (batch {batch})", flush=True)

    if torch.cuda.is_available():
        gpu = torch.device("cuda")
        flops = model_flops_per_sample(GEOMETRY, model_config("base"))
        peak = bf16_matmul_peak(gpu)
        figures = train_step_rate(
            "base", args.gpu_batch, gpu, max(args.steps, 10), args.warmup, torch.bfloat16
        )
        achieved = figures["samples_per_s"] * flops
        result["cuda"] = {
            "device": torch.cuda.get_device_name(gpu),
            "base_bf16": figures,
            "train_flops_per_sample": flops,
            "bf16_matmul_peak_tflops": peak / 1e12,
            "achieved_tflops": achieved / 1e12,
            "mfu": achieved / peak,
        }
        mfu = achieved / peak
        print(f"cuda base bf16: {figures['samples_per_s']:.1f} samples/s, MFU {mfu:.3f}")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
