// vitiq/detail/xtensor.hpp -- the one place vitiq includes xtensor.
//
// xtensor 0.24/0.25 (Debian 12 ships 0.24) keeps its headers flat: <xtensor/xarray.hpp>.
// xtensor 0.26 moved them into subfolders: <xtensor/containers/xarray.hpp>,
// <xtensor/views/xview.hpp>, ... Every vitiq header that needs xtensor includes this file instead
// of naming xtensor headers itself, so a version change is handled here and nowhere else.
//
// What this brings in: xt::xarray, xt::xtensor, xt::adapt, xt::view / xt::range / xt::all,
// the builders (xt::zeros, xt::empty, ...), the element-wise math (xt::clip, xt::round, ...),
// and the manipulation helpers (xt::flip, xt::transpose, ...).
#pragma once

#if __has_include(<xtensor/containers/xarray.hpp>)  // xtensor >= 0.26
#include <xtensor/containers/xadapt.hpp>
#include <xtensor/containers/xarray.hpp>
#include <xtensor/containers/xtensor.hpp>
#include <xtensor/core/xmath.hpp>
#include <xtensor/generators/xbuilder.hpp>
#include <xtensor/misc/xmanipulation.hpp>
#include <xtensor/views/xview.hpp>
#elif __has_include(<xtensor/xarray.hpp>)  // xtensor 0.24, 0.25
#include <xtensor/xadapt.hpp>
#include <xtensor/xarray.hpp>
#include <xtensor/xbuilder.hpp>
#include <xtensor/xmanipulation.hpp>
#include <xtensor/xmath.hpp>
#include <xtensor/xtensor.hpp>
#include <xtensor/xview.hpp>
#else
#error "vitiq needs xtensor (>= 0.24): neither <xtensor/xarray.hpp> nor <xtensor/containers/xarray.hpp> was found"
#endif
