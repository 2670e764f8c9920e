"""PyTorch side of the CPU comparison (benchmarks/compare.py runs it; one measurement per process).

The model is the reference model of the tests (tests/reference/vit_reference.py), float32; a
training step is forward + soft-label cross-entropy + backward + AdamW (weight decay 0.05 on the
Linear weight matrices), as in benchmarks/bench_compare.cpp. Run with Debian's interpreter:

    /usr/bin/python3 benchmarks/pytorch_peer.py parity --preset aio --dir DIR
        loads DIR/aio.weights.safetensors (written by vitiq-bench-compare export), computes the
        logits of DIR/aio.parity.safetensors's images and compares them with vitiq's
    /usr/bin/python3 benchmarks/pytorch_peer.py time --preset aio --work train --batch 64 --torch-threads 2
        median seconds per step, images/s and peak resident memory (ru_maxrss), one JSON line
    /usr/bin/python3 benchmarks/pytorch_peer.py gemm --size 2048 --torch-threads 2
        a float32 size^3 torch.mm (OpenBLAS): the GEMM peak

Thread settings (torch.set_num_threads, OMP_WAIT_POLICY, OPENBLAS_NUM_THREADS, OpenBLAS's core
type) come from the command line and the environment; compare.py tries several and keeps the best.
"""
import argparse
import json
import os
import resource
import statistics
import sys
import time

import torch

_REF = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "reference")
sys.path.insert(0, os.path.normpath(_REF))
import safetensors_io  # noqa: E402
import vit_reference as ref  # noqa: E402


def time_runs(fn, min_time):
    """Warm up once, then run until min_time has passed and at least 3 runs were made."""
    fn()
    runs, start = [], time.perf_counter()
    while True:
        t0 = time.perf_counter()
        fn()
        t1 = time.perf_counter()
        runs.append(t1 - t0)
        if t1 - start >= min_time and len(runs) >= 3:
            return runs


def peak_rss_kib():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux


def cmd_parity(args):
    tensors, md = safetensors_io.load_file(os.path.join(args.dir, f"{args.preset}.weights.safetensors"))
    cfg = ref.config_from_metadata(md)
    model = ref.ViT(cfg)
    model.load_state_dict({k: v.float() for k, v in tensors.items()}, strict=True)
    model.eval()
    data, _ = safetensors_io.load_file(os.path.join(args.dir, f"{args.preset}.parity.safetensors"))
    with torch.no_grad():
        logits = model(data["images"].float())
    theirs = data["logits"].float()
    err = ((logits - theirs).abs().max() / theirs.abs().max().clamp_min(1e-30)).item()
    print(json.dumps({"side": "pytorch", "command": "parity", "preset": args.preset,
                      "batch": int(logits.shape[0]), "max_rel_diff": err,
                      "logits_pytorch": logits[0].tolist(), "logits_vitiq": theirs[0].tolist()}))


def cmd_time(args):
    torch.manual_seed(0)
    cfg = ref.make_config(args.preset)
    model = ref.ViT(cfg)
    B = args.batch
    x = torch.randn(B, cfg["channels"], cfg["image_size"], cfg["image_size"])
    if args.work == "infer":
        model.eval()

        def step():
            with torch.no_grad():
                model(x)
        flops = B * forward_flops(cfg)
    else:
        model.train()
        target = ref.gaussian_soft_labels(torch.arange(B) % cfg["num_classes"] + 1, cfg["num_classes"]).float()
        names = [n for n, _ in model.named_parameters()]
        decay = set(ref.decay_parameter_names(names))
        opt = torch.optim.AdamW(
            [{"params": [p for n, p in model.named_parameters() if n in decay], "weight_decay": 0.05},
             {"params": [p for n, p in model.named_parameters() if n not in decay], "weight_decay": 0.0}],
            lr=1e-4)

        def step():
            opt.zero_grad()
            ref.soft_cross_entropy(model(x), target).backward()
            opt.step()
        flops = 3 * B * forward_flops(cfg)
    runs = time_runs(step, args.min_time)
    t = statistics.median(runs)
    print(json.dumps({"side": "pytorch", "preset": args.preset, "work": args.work, "batch": B,
                      "torch_threads": torch.get_num_threads(), "runs": len(runs), "seconds": t,
                      "images_per_s": B / t, "gflops": flops / t * 1e-9, "peak_rss_kib": peak_rss_kib()}))


def cmd_gemm(args):
    if args.shape:  # C [M, N] = X [M, K] W^T, W [N, K]: a Linear layer, as vitiq-bench-compare gemm --shape
        m, n, k = (int(v) for v in args.shape.split(","))
        x, w = torch.randn(m, k), torch.randn(n, k)
        t = statistics.median(time_runs(lambda: torch.nn.functional.linear(x, w), args.min_time))
        print(json.dumps({"side": "pytorch", "command": "gemm", "m": m, "n": n, "k": k, "linear": True,
                          "torch_threads": torch.get_num_threads(), "seconds": t, "gflops": 2.0 * m * n * k / t * 1e-9}))
        return
    n = args.size
    a, b = torch.randn(n, n), torch.randn(n, n)
    t = statistics.median(time_runs(lambda: torch.mm(a, b), args.min_time))
    print(json.dumps({"side": "pytorch", "command": "gemm", "size": n, "torch_threads": torch.get_num_threads(),
                      "seconds": t, "gflops": 2.0 * n ** 3 / t * 1e-9}))


def forward_flops(cfg):
    """Matmul FLOPs of one image's forward pass, counted as vitiq/model/flops.hpp counts them."""
    P, C, S = cfg["patch_size"], cfg["channels"], cfg["image_size"]
    n = (S // P) ** 2
    N, D, M, K, h, d = n + 1, cfg["dim"], cfg["mlp_dim"], cfg["num_classes"], cfg["heads"], cfg["dim_head"]
    I, PD = h * d, (1 if cfg["spt"] == "none" else 5) * C * P * P
    block = 2 * N * D * 3 * I + 4 * h * N * N * d + 2 * N * I * D + 4 * N * D * M
    return 2 * n * PD * D + cfg["depth"] * block + 2 * D * K


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="command", required=True)
    p = sub.add_parser("parity")
    p.add_argument("--preset", required=True)
    p.add_argument("--dir", required=True)
    p = sub.add_parser("time")
    p.add_argument("--preset", required=True)
    p.add_argument("--work", choices=("train", "infer"), required=True)
    p.add_argument("--batch", type=int, required=True)
    p.add_argument("--min-time", type=float, default=2.0)
    p = sub.add_parser("gemm")
    p.add_argument("--size", type=int, default=2048)
    p.add_argument("--shape", help="M,N,K: X [M, K] times W [N, K] transposed (a Linear layer) instead of size^3")
    p.add_argument("--min-time", type=float, default=2.0)
    for name in ("parity", "time", "gemm"):
        sub.choices[name].add_argument("--torch-threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.torch_threads)
    {"parity": cmd_parity, "time": cmd_time, "gemm": cmd_gemm}[args.command](args)


if __name__ == "__main__":
    main()
