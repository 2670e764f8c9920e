#!/usr/bin/python3
"""vitiq against PyTorch on this machine's CPU: one table, in under 10 minutes.

    /usr/bin/python3 benchmarks/compare.py --bench build/benchmarks/vitiq-bench-compare [--markdown out.md]

(benchmarks/compare.sh builds the C++ side and runs this.) Steps, each measurement in its own
process (so that ru_maxrss is that run's peak resident memory):

1. parity: vitiq-bench-compare writes seed-0 weights (PyTorch names) and its float logits for 4
   images; the reference model of tests/reference loads the weights and must give the same
   logits (max |difference| / max |logit| < 1e-4), or the run stops before timing anything;
2. the GEMM peak of this run: a float32 2048^3 GEMM through vitiq's backend (Eigen) and through
   PyTorch (OpenBLAS), 1 and 2 threads; the peak is the faster of the two;
3. PyTorch's best setting at each thread count, found by a short training run of every
   candidate (torch threads x OMP_WAIT_POLICY x OpenBLAS threads x OpenBLAS core type);
4. per preset and thread count: the GEMM peak again, just before the rows (vitiq's chosen engine
   and PyTorch's chosen setting, the faster of the two), then training at batch 64, inference at
   batch 64 and at batch 1, vitiq and PyTorch alternately. This VM's speed drifts by 10-25 %
   within minutes, so each row's share is given of both peaks: the run's (step 2) and the one
   measured beside it.

Throughput is images/s from the median step time; GFLOP/s counts matmul FLOPs only (2 per
multiply-add, training = 3 x forward; vitiq/model/flops.hpp), the model's nominal count as the
issue defines it: a class-token-pooled vitiq model runs its last block for the class token alone,
and a training step's backward needs no patch gradient where the patch LayerNorm is folded, so it
executes fewer (executed_training_flops; the note under the table gives the share and the
executed share of the peak).
"""
import argparse
import datetime
import json
import os
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
PEER = os.path.join(HERE, "pytorch_peer.py")
PY = "/usr/bin/python3"  # Debian's interpreter, which has python3-torch

# PyTorch candidates: (name, torch threads, extra environment). "native" OpenBLAS core type:
# OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE unset, so OpenBLAS picks its kernels for this CPU.
def torch_candidates(threads):
    base = {"OMP_NUM_THREADS": str(threads), "OPENBLAS_NUM_THREADS": str(threads)}
    out = []
    for coretype in ("env", "native"):
        if threads == 1:
            out.append((f"1 thread, OpenBLAS core {coretype}", 1, dict(base), coretype))
            continue
        out.append((f"torch 2, OMP active, OpenBLAS core {coretype}", 2, dict(base), coretype))
        out.append((f"torch 2, OMP_WAIT_POLICY=PASSIVE, OpenBLAS core {coretype}", 2,
                    dict(base, OMP_WAIT_POLICY="PASSIVE"), coretype))
        out.append((f"torch 1 + OpenBLAS 2 threads, OpenBLAS core {coretype}", 1,
                    dict(base, OMP_NUM_THREADS="1"), coretype))
    return out


def environment(extra, coretype="env"):
    env = dict(os.environ)
    env.update(extra)
    if coretype == "native":
        env.pop("OPENBLAS_CORETYPE", None)
        env.pop("OPENBLAS_L2_SIZE", None)
    return env


def run_json(cmd, env):
    r = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit(f"compare.py: {' '.join(cmd)} failed ({r.returncode}):\n{r.stderr}")
    return json.loads(r.stdout.strip().splitlines()[-1])


# vitiq's GEMM engines (vitiq::GemmEngine): Eigen, and the BLAS (OpenBLAS through vitiq::blas)
# with OpenBLAS choosing its kernels for this CPU. Like PyTorch's, vitiq's best engine per thread
# count is found by short training runs.
VITIQ_ENGINES = {"eigen": {"VITIQ_GEMM": "eigen"}, "blas": {"VITIQ_GEMM": "blas"}}


def vitiq(bench, threads, *args, engine="eigen"):
    env = environment(dict(VITIQ_ENGINES[engine], OMP_NUM_THREADS=str(threads)),
                      "native" if engine == "blas" else "env")
    return run_json([bench, *args, "--threads", str(threads)], env)


def torch_run(setting, *args):
    _, tthreads, extra, coretype = setting
    return run_json([PY, PEER, *args, "--torch-threads", str(tthreads)], environment(extra, coretype))


def load():
    return ", ".join(f"{x:.2f}" for x in os.getloadavg())


def cpu_model():
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
        for line in out.splitlines():
            if line.startswith("Model name:"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bench", required=True, help="the vitiq-bench-compare program")
    ap.add_argument("--presets", default="cifar,aio,iqa")
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--min-time", type=float, default=2.0, help="seconds of timed runs per measurement")
    ap.add_argument("--search-time", type=float, default=1.0, help="seconds per PyTorch candidate")
    ap.add_argument("--search-presets", help="presets whose training runs choose PyTorch's setting "
                    "(default: each preset its own; one preset, e.g. aio, chooses for all and saves minutes)")
    ap.add_argument("--markdown", help="also write the results as a Markdown section to this file")
    ap.add_argument("--vitiq-engines", default="eigen,blas",
                    help="vitiq GEMM engines to try (default eigen,blas; the BLAS only where the program has it)")
    args = ap.parse_args()
    presets = args.presets.split(",")
    thread_counts = [int(t) for t in args.threads.split(",")]
    t_start = time.time()
    log = lambda *a: print(*a, file=sys.stderr, flush=True)  # noqa: E731
    load_start = load()
    log(f"compare.py: {cpu_model()}, {os.cpu_count()} CPUs, load average {load_start}")

    # 1. parity
    parity = {}
    with tempfile.TemporaryDirectory() as tmp:
        for p in presets:
            vitiq(args.bench, 1, "export", "--preset", p, "--out", tmp, "--batch", "4")
            r = torch_run(torch_candidates(1)[0], "parity", "--preset", p, "--dir", tmp)
            parity[p] = r["max_rel_diff"]
            log(f"parity {p}: max |logit difference| / max |logit| = {r['max_rel_diff']:.2e}")
            if not r["max_rel_diff"] < 1e-4:
                sys.exit(f"compare.py: vitiq and PyTorch disagree on the {p} logits: {r}")

    # vitiq's engines: the BLAS only where the program has it
    engines = [e for e in args.vitiq_engines.split(",")
               if e == "eigen" or vitiq(args.bench, 1, "engines").get(e, False)]
    log(f"vitiq GEMM engines: {', '.join(engines)}")

    # 2. GEMM peak
    gemm = {}
    for t in thread_counts:
        v = {e: vitiq(args.bench, t, "gemm", "--size", "2048", "--min-time", "1", engine=e)["gflops"]
             for e in engines}
        best_torch = max(torch_run(s, "gemm", "--size", "2048", "--min-time", "1")["gflops"]
                         for s in torch_candidates(t))
        gemm[t] = {"vitiq": max(v.values()), "vitiq_engines": v, "openblas": best_torch,
                   "peak": max(max(v.values()), best_torch)}
        log(f"GEMM 2048^3, {t} thread(s): " + ", ".join(f"vitiq/{e} {g:.1f}" for e, g in v.items()) +
            f", PyTorch/OpenBLAS {best_torch:.1f} GFLOP/s")

    # 3. PyTorch's best setting per thread count and preset (short training runs)
    best = {}
    search = args.search_presets.split(",") if args.search_presets else presets
    for t in thread_counts:
        for p in search:
            trials = []
            for s in torch_candidates(t):
                r = torch_run(s, "time", "--preset", p, "--work", "train", "--batch", str(args.batch),
                              "--min-time", str(args.search_time))
                trials.append((r["images_per_s"], s))
                log(f"  PyTorch {p} train, {s[0]}: {r['images_per_s']:.1f} images/s")
            best[(t, p)] = max(trials, key=lambda x: x[0])[1]
            log(f"PyTorch best {t}-thread setting for {p}: {best[(t, p)][0]}")
        for p in presets:
            best.setdefault((t, p), best[(t, search[0])])
    best_engine = {}
    for t in thread_counts:
        for p in search:
            trials = []
            for e in engines:
                r = vitiq(args.bench, t, "time", "--preset", p, "--work", "train", "--batch", str(args.batch),
                          "--min-time", str(args.search_time), engine=e)
                trials.append((r["images_per_s"], e))
                log(f"  vitiq {p} train, {t} thread(s), GEMM engine {e}: {r['images_per_s']:.1f} images/s")
            best_engine[(t, p)] = max(trials)[1]
            log(f"vitiq best {t}-thread engine for {p}: {best_engine[(t, p)]}")
        for p in presets:
            best_engine.setdefault((t, p), best_engine[(t, search[0])])

    # 4. the table
    works = [("train", args.batch), ("infer", args.batch), ("infer", 1)]
    rows = []
    for p in presets:
        for t in thread_counts:
            local = max(vitiq(args.bench, t, "gemm", "--size", "2048", "--min-time", "1",
                              engine=best_engine[(t, p)])["gflops"],
                        torch_run(best[(t, p)], "gemm", "--size", "2048", "--min-time", "1")["gflops"])
            log(f"GEMM peak beside {p}, {t} thread(s): {local:.1f} GFLOP/s")
            for work, B in works:
                common = ["--preset", p, "--work", work, "--batch", str(B), "--min-time", str(args.min_time)]
                v = vitiq(args.bench, t, "time", *common, engine=best_engine[(t, p)])
                q = torch_run(best[(t, p)], "time", *common)
                rows.append({"preset": p, "threads": t, "work": work, "batch": B, "vitiq": v, "pytorch": q,
                             "setting": best[(t, p)][0], "engine": best_engine[(t, p)], "local_peak": local})
                log(f"{p} {work} batch {B} {t} thread(s): vitiq {v['images_per_s']:.1f}, "
                    f"PyTorch {q['images_per_s']:.1f} images/s")

    elapsed = time.time() - t_start
    md = markdown(rows, gemm, parity, best, best_engine, load_start, load(), elapsed)
    print(md)
    if args.markdown:
        tmp = args.markdown + ".tmp"
        with open(tmp, "w") as f:
            f.write(md)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, args.markdown)


def markdown(rows, gemm, parity, best, best_engine, load_start, load_end, elapsed):
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    out = [f"Run {now} on {cpu_model()} ({os.cpu_count()} CPUs), load average at start {load_start}, "
           f"at end {load_end}; {elapsed / 60:.1f} minutes.", ""]
    out.append("GEMM peak (float32 2048^3, GFLOP/s): " + "; ".join(
        f"{t} thread(s): " + ", ".join(f"vitiq/{e} {x:.1f}" for e, x in g["vitiq_engines"].items()) +
        f", PyTorch/OpenBLAS {g['openblas']:.1f}, peak {g['peak']:.1f}"
        for t, g in gemm.items()) + ".")
    out.append("Parity (max |logit difference| / max |logit|, 4 images, seed-0 weights): " +
               ", ".join(f"{p} {e:.1e}" for p, e in parity.items()) + ".")
    out.append("PyTorch settings chosen (best training throughput of the candidates): " + "; ".join(
        f"{p} {t} thread(s): {s[0]}" for (t, p), s in best.items()) + ".")
    out.append("vitiq GEMM engines chosen the same way: " + "; ".join(
        f"{p} {t} thread(s): {e}" for (t, p), e in best_engine.items()) + ".")
    out.append("")
    out.append("| preset | threads | work | batch | vitiq images/s | PyTorch images/s | vitiq / PyTorch | "
               "vitiq GFLOP/s | % of GEMM peak | % of peak beside it | vitiq ms/batch | PyTorch ms/batch | "
               "vitiq peak RSS MiB | PyTorch peak RSS MiB |")
    out.append("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        v, q = r["vitiq"], r["pytorch"]
        share = 100 * v["gflops"] / gemm[r["threads"]]["peak"]
        share_beside = 100 * v["gflops"] / r["local_peak"]
        work = "training" if r["work"] == "train" else "inference"
        out.append(f"| {r['preset']} | {r['threads']} | {work} | {r['batch']} | {v['images_per_s']:.1f} | "
                   f"{q['images_per_s']:.1f} | {v['images_per_s'] / q['images_per_s']:.2f} | {v['gflops']:.1f} | "
                   f"{share:.0f} % | {share_beside:.0f} % ({r['local_peak']:.0f}) | {v['seconds'] * 1e3:.1f} | "
                   f"{q['seconds'] * 1e3:.1f} | "
                   f"{v['peak_rss_kib'] / 1024:.0f} | {q['peak_rss_kib'] / 1024:.0f} |")
    executed = {}  # preset -> [(threads, executed share of the nominal training FLOPs, nominal % of the GEMM peak)]
    for r in rows:
        if r["work"] == "train":
            executed.setdefault(r["preset"], []).append(
                (r["threads"], r["vitiq"].get("executed_flops_share", 1.0),
                 100 * r["vitiq"]["gflops"] / gemm[r["threads"]]["peak"]))
    if executed:
        parts = []
        for preset, runs in executed.items():
            shares = ", ".join(f"{t} thread(s) {fraction * peak_share:.0f} %" for t, fraction, peak_share in runs)
            parts.append(f"{preset} {runs[0][1] * 100:.0f} % ({shares})")
        out.append("")
        out.append("Training: vitiq's executed matmul FLOPs (class-token-only last block, folded patch LayerNorm) "
                   "as a share of the nominal count, and the rows' share of the GEMM peak counted with them: " +
                   "; ".join(parts) + ".")
    return "\n".join(out) + "\n"


if __name__ == "__main__":
    main()
