// vitiq/cpu/rng.hpp -- random numbers: a counter-based hash for dropout masks, and a small
// seedable generator (with a state that checkpoints can save) for initialisation and sampling.
//
// Invariant: uniform01(seed, stream, i) depends only on its arguments, so masks are identical for
// any thread count and can be reproduced bit for bit by a GPU kernel.
#pragma once

#include <cmath>
#include <cstdint>

namespace vitiq {

/// @brief SplitMix64 finaliser: a bijective 64-bit mix with good avalanche.
/// @param z the input word
/// @return SplitMix64's output for the state z (z is advanced by the golden gamma first)
constexpr std::uint64_t mix64(std::uint64_t z) {
  z += 0x9E3779B97F4A7C15ULL;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
  return z ^ (z >> 31);
}

/// @brief A uniform double in [0, 1) determined by (seed, stream, counter).
///
/// Stateless, so any thread (or GPU kernel) can compute element `counter` of a mask on its own.
/// @param seed    the run's dropout seed
/// @param stream  selects an independent sequence (one per masked tensor and pass)
/// @param counter index within the sequence (the element index)
/// @return a multiple of 2^-53 in [0, 1)
constexpr double uniform01(std::uint64_t seed, std::uint64_t stream, std::uint64_t counter) {
  const std::uint64_t h = mix64(mix64(seed ^ mix64(stream)) + counter);
  return double(h >> 11) * 0x1.0p-53;
}

/// @brief xoshiro256** seeded through SplitMix64; `state` is plain data a checkpoint can store.
class Rng {
 public:
  /// @brief A generator seeded with `seed` (see reseed()).
  /// @param seed any 64-bit value; equal seeds give equal sequences
  explicit Rng(std::uint64_t seed = 0) { reseed(seed); }
  /// @brief Restart the sequence: state[i] = mix64(seed + i).
  /// @param seed any 64-bit value
  void reseed(std::uint64_t seed) {
    std::uint64_t z = seed;
    for (auto& s : state) s = mix64(z++);
  }
  /// @brief Next raw 64-bit value (advances the state).
  std::uint64_t next() {
    const std::uint64_t result = rotl(state[1] * 5, 7) * 9;
    const std::uint64_t t = state[1] << 17;
    state[2] ^= state[0];
    state[3] ^= state[1];
    state[1] ^= state[2];
    state[0] ^= state[3];
    state[2] ^= t;
    state[3] = rotl(state[3], 45);
    return result;
  }
  /// @brief Uniform in [0, 1), a multiple of 2^-53 (consumes one next()).
  double uniform() { return double(next() >> 11) * 0x1.0p-53; }
  /// @brief Uniform in [lo, hi) (consumes one next()).
  /// @param lo lower bound (included)
  /// @param hi upper bound (excluded)
  /// @return lo + (hi - lo) * uniform()
  double uniform(double lo, double hi) { return lo + (hi - lo) * uniform(); }
  /// @brief Uniform integer in [0, n), n > 0 (rejection sampling, unbiased).
  /// @param n number of outcomes, n > 0
  /// @return a value in [0, n), each with probability 1/n
  std::uint64_t below(std::uint64_t n) {
    const std::uint64_t limit = ~std::uint64_t(0) - (~std::uint64_t(0) % n);
    std::uint64_t x;
    do { x = next(); } while (x >= limit);
    return x % n;
  }
  /// @brief Standard normal (Box-Muller; no cached spare, so the state alone defines the sequence).
  double normal() {
    double u1 = uniform();
    while (u1 <= 0.0) u1 = uniform();
    const double u2 = uniform();
    return std::sqrt(-2.0 * std::log(u1)) * std::cos(6.283185307179586 * u2);
  }

  /// The xoshiro256** state; public so a checkpoint can save and restore it (TrainState::rng_state).
  std::uint64_t state[4] = {};

 private:
  static constexpr std::uint64_t rotl(std::uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }
};

}  // namespace vitiq
