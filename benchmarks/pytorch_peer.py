"""PyTorch peer of benchmarks/bench_model.cpp: the same models (tests/reference/vit_reference.py),
the same batch sizes, float32, forward and training step (soft-label cross-entropy + backward +
AdamW), images/s. Run with Debian's interpreter, with the thread count of the C++ side:

    OMP_NUM_THREADS=2 OMP_WAIT_POLICY=PASSIVE /usr/bin/python3 benchmarks/pytorch_peer.py --threads 2

(OMP_WAIT_POLICY=PASSIVE: PyTorch's best two-core setting on these machines; see benchmarks/RESULTS.md).
"""
import argparse
import os
import sys
import time

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "reference"))
import vit_reference as ref  # noqa: E402


def timeit(fn, min_time):
    fn()  # warm-up
    n, t0 = 0, time.perf_counter()
    while True:
        fn()
        n += 1
        el = time.perf_counter() - t0
        if el >= min_time and n >= 3:
            return el / n


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--min-time", type=float, default=2.0)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    cases = [("aio", "forward", 1), ("aio", "forward", 64), ("aio", "train", 64),
             ("iqa", "forward", 1), ("iqa", "forward", 64), ("iqa", "train", 32)]
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}")
    for preset, kind, B in cases:
        cfg = ref.PRESETS[preset]
        model = ref.ViT(cfg)
        x = torch.randn(B, 3, cfg["image_size"], cfg["image_size"])
        if kind == "forward":
            model.eval()

            def step():
                with torch.no_grad():
                    model(x)
        else:
            model.train()
            target = ref.gaussian_soft_labels(torch.arange(B) % 5 + 1).float()
            decay = set(ref.decay_parameter_names([n for n, _ in model.named_parameters()]))
            opt = torch.optim.AdamW([{"params": [p for n, p in model.named_parameters() if n in decay], "weight_decay": 0.05},
                                     {"params": [p for n, p in model.named_parameters() if n not in decay], "weight_decay": 0.0}],
                                    lr=1e-4)

            def step():
                opt.zero_grad()
                ref.soft_cross_entropy(model(x), target).backward()
                opt.step()
        t = timeit(step, args.min_time)
        print(f"pytorch {preset:4s} {kind:8s} batch {B:3d}: {t * 1e3:8.2f} ms  {B / t:8.1f} images/s")


if __name__ == "__main__":
    main()
