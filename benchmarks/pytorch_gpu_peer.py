"""PyTorch side of the GPU benchmark (benchmarks/gpu_check.sh runs it beside vitiq-bench-cuda).

The model is the reference model of the tests (tests/reference/vit_reference.py) in float32 on
the GPU, TF32 off (as vitiq's default) unless --tf32; the work is the same as vitiq-bench-cuda's:
inference (eval mode, no_grad) and a training step (forward, soft-label cross-entropy, backward,
AdamW with weight decay 0.05 on the Linear weight matrices), at the same batch sizes. Timing:
torch.cuda.Event around `iters` steps after 3 warm-up steps. One JSON line per measurement:

    python3 benchmarks/pytorch_gpu_peer.py --preset iqa --preset seed [--iters 20] [--tf32]

Use the interpreter that has a CUDA build of PyTorch (on the GPU machine: `python3`).
"""
import argparse
import json
import os
import sys

import torch

_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.normpath(os.path.join(_HERE, "..", "tests", "reference")))
import vit_reference as ref  # noqa: E402

# Batch sizes of vitiq-bench-cuda (benchmarks/bench_cuda.cu): (inference, training).
BATCHES = {"iqa": (256, 128), "seed": (64, 32), "aio": (256, 128)}


def forward_flops(cfg):
    """Matmul FLOPs of one image's forward pass, counted as vitiq/model/flops.hpp counts them."""
    P, C, S = cfg["patch_size"], cfg["channels"], cfg["image_size"]
    n = (S // P) ** 2
    N = n + 1
    D, h, d, M, K = cfg["dim"], cfg["heads"], cfg["dim_head"], cfg["mlp_dim"], cfg["num_classes"]
    I = h * d
    PD = (5 if cfg["spt"] != "none" else 1) * C * P * P
    block = 2 * N * D * 3 * I + 2 * h * N * N * d + 2 * h * N * N * d + 2 * N * I * D + 2 * N * D * M + 2 * N * M * D
    return 2 * n * PD * D + cfg["depth"] * block + 2 * D * K


def time_steps(step, iters):
    for _ in range(3):
        step()
    start, stop = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    torch.cuda.synchronize()
    start.record()
    for _ in range(iters):
        step()
    stop.record()
    torch.cuda.synchronize()
    return start.elapsed_time(stop) / 1000.0 / iters


def bench(preset, iters, tf32):
    torch.manual_seed(0)
    cfg = ref.make_config(preset)
    dev = torch.device("cuda")
    model = ref.ViT(cfg).to(dev)
    b_infer, b_train = BATCHES[preset]
    out = []

    x = torch.randn(b_infer, cfg["channels"], cfg["image_size"], cfg["image_size"], device=dev)
    model.eval()

    def infer():
        with torch.no_grad():
            model(x)
    t = time_steps(infer, iters)
    out.append(("infer", b_infer, t, forward_flops(cfg) * b_infer))

    x = torch.randn(b_train, cfg["channels"], cfg["image_size"], cfg["image_size"], device=dev)
    target = ref.gaussian_soft_labels(torch.arange(b_train) % cfg["num_classes"] + 1, cfg["num_classes"]).float().to(dev)
    names = [n for n, _ in model.named_parameters()]
    decay = set(ref.decay_parameter_names(names))
    opt = torch.optim.AdamW(
        [{"params": [p for n, p in model.named_parameters() if n in decay], "weight_decay": 0.05},
         {"params": [p for n, p in model.named_parameters() if n not in decay], "weight_decay": 0.0}], lr=1e-4)
    model.train()

    def train():
        opt.zero_grad()
        ref.soft_cross_entropy(model(x), target).backward()
        opt.step()
    t = time_steps(train, iters)
    out.append(("train", b_train, t, 3 * forward_flops(cfg) * b_train))

    for work, batch, seconds, flops in out:
        print(json.dumps({"side": "pytorch", "preset": preset, "work": work, "batch": batch, "seconds": seconds,
                          "images_per_s": batch / seconds, "tflops": flops / seconds * 1e-12, "tf32": tf32,
                          "torch": torch.__version__, "device": torch.cuda.get_device_name(0)}), flush=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", action="append", choices=sorted(BATCHES), help="repeatable; default iqa and seed")
    ap.add_argument("--iters", type=int, default=20)
    ap.add_argument("--tf32", action="store_true", help="allow TF32 in matmuls (default off, as vitiq)")
    args = ap.parse_args()
    if not torch.cuda.is_available():
        sys.exit("pytorch_gpu_peer.py: torch.cuda.is_available() is False (no GPU, or a CPU-only PyTorch)")
    torch.backends.cuda.matmul.allow_tf32 = args.tf32
    torch.backends.cudnn.allow_tf32 = args.tf32
    for p in args.preset or ["iqa", "seed"]:
        bench(p, args.iters, args.tf32)


if __name__ == "__main__":
    main()
