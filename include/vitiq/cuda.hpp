// vitiq/cuda.hpp -- the umbrella header of the CUDA backend: the whole CPU library (vitiq.hpp)
// plus CudaBackend<T>, its context and device buffers. A model runs on the GPU by changing its
// backend type: `vitiq::ViT<C, vitiq::CudaBackend<float>>`.
//
// Compiles only under nvcc (link vitiq::cuda, which exists where CMake found a CUDA compiler and
// toolkit); the CPU headers never include it.
#pragma once

#if !defined(__CUDACC__)
#error "vitiq/cuda.hpp is a CUDA header: compile this translation unit with nvcc (CUDA language) and link vitiq::cuda"
#endif

#include "vitiq/vitiq.hpp"

#include "vitiq/cuda/backend.hpp"
#include "vitiq/cuda/context.hpp"
#include "vitiq/cuda/error.hpp"
#include "vitiq/cuda/kernels.hpp"
#include "vitiq/cuda/rng.hpp"
