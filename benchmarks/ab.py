#!/usr/bin/python3
"""A/B timing of two builds of vitiq-bench-compare on a shared, noisy machine: runs of the two
programs alternate (A B A B ...), each run a separate process, and the medians are compared.

    /usr/bin/python3 benchmarks/ab.py OLD_BENCH NEW_BENCH [--cases aio:train:64:2,...] [--rounds 5]

A case is preset:work:batch:threads. Prints one line per case: median images/s of A and B, B / A,
and the spread (min-max) of each, plus the load average before and after. --metric cpu compares
images per CPU second instead (for one-thread runs on a busy machine).
"""
import argparse
import json
import os
import statistics
import subprocess

METRIC = "wall"


def run(bench, preset, work, batch, threads, min_time, extra_env):
    env = dict(os.environ, OMP_NUM_THREADS=threads, **extra_env)
    out = subprocess.run([bench, "time", "--preset", preset, "--work", work, "--batch", batch, "--threads", threads,
                          "--min-time", str(min_time)], env=env, capture_output=True, text=True, check=True).stdout
    r = json.loads(out.strip().splitlines()[-1])
    return r["images_per_s"] if METRIC == "wall" else int(batch) / r["cpu_seconds"]


def parse_env(s):
    return dict(kv.split("=", 1) for kv in s.split(",")) if s else {}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("a")
    ap.add_argument("b")
    ap.add_argument("--cases", default="aio:train:64:1,aio:train:64:2")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--min-time", type=float, default=1.0)
    ap.add_argument("--env-a", default="", help="extra environment of A, e.g. VITIQ_SPIN_US=0")
    ap.add_argument("--env-b", default="", help="extra environment of B")
    ap.add_argument("--metric", choices=("wall", "cpu"), default="wall",
                    help="images per wall second, or per CPU second of all threads (less disturbed by load)")
    args = ap.parse_args()
    global METRIC
    METRIC = args.metric
    print("load before: " + ", ".join(f"{x:.2f}" for x in os.getloadavg()))
    for case in args.cases.split(","):
        preset, work, batch, threads = case.split(":")
        ra, rb = [], []
        for _ in range(args.rounds):
            ra.append(run(args.a, preset, work, batch, threads, args.min_time, parse_env(args.env_a)))
            rb.append(run(args.b, preset, work, batch, threads, args.min_time, parse_env(args.env_b)))
        ma, mb = statistics.median(ra), statistics.median(rb)
        print(f"{case}: A {ma:.1f} [{min(ra):.1f}-{max(ra):.1f}]  B {mb:.1f} [{min(rb):.1f}-{max(rb):.1f}]  "
              f"B/A {mb / ma:.2f}", flush=True)
    print("load after: " + ", ".join(f"{x:.2f}" for x in os.getloadavg()))


if __name__ == "__main__":
    main()
