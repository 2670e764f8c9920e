#!/usr/bin/env bash
# cmake/install_debian_deps.sh -- install the Debian 12 packages vitiq's build, tests and examples
# need, when missing. Only root installs; others get a warning naming what is missing.
# Sourced or run by tests/run_all.sh (the test command) and examples/run_main_job.sh (the main job).
set -euo pipefail
packages=(build-essential cmake pkg-config libeigen3-dev xtensor-dev libstb-dev catch2 libcli11-dev
          libbenchmark-dev doxygen python3-torch python3-skimage libcairo2-dev
          libblas-dev libopenblas0-pthread  # cblas.h + libblas.so for vitiq::blas; OpenBLAS as libblas.so.3
                                            # (also the PyTorch peer's BLAS: the reference BLAS is 20x slower)
          clang-14 libclang-rt-14-dev libomp-14-dev)  # tests/fuzz: clang, libFuzzer, OpenMP for clang
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}\n' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if ((${#missing[@]})); then
  if [ "$(id -u)" -eq 0 ]; then
    echo "install_debian_deps: installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q
    apt-get install -y -q --no-install-recommends "${missing[@]}"
  else
    echo "install_debian_deps: warning: missing packages (run as root to install): ${missing[*]}" >&2
  fi
fi
