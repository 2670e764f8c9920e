// vitiq/vitiq.hpp -- the umbrella header of the CPU library: configuration, CPU backend, model,
// losses, optimisers, schedules and weight files. Image I/O (xtensor + stb) is separate:
// include "vitiq/io/image.hpp" and link vitiq::io. The CUDA backend never comes in through here.
#pragma once

#include "vitiq/backend.hpp"
#include "vitiq/config.hpp"
#include "vitiq/cpu/backend.hpp"
#include "vitiq/cpu/rng.hpp"
#include "vitiq/error.hpp"
#include "vitiq/model/param_layout.hpp"
#include "vitiq/model/vit.hpp"
#include "vitiq/train/loss.hpp"
#include "vitiq/train/optimizer.hpp"
#include "vitiq/train/schedule.hpp"
#include "vitiq/model/flops.hpp"
