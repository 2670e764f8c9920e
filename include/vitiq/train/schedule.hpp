// vitiq/train/schedule.hpp -- learning-rate schedules: constant, linear warm-up followed by
// cosine decay, and reduce-on-plateau with PyTorch's semantics.
//
// Schedules are host-side value types; their state is plain numbers a checkpoint can store.
#pragma once

#include <cmath>
#include <cstdint>
#include <limits>
#include <stdexcept>

namespace vitiq {

/// @brief Learning rate at step t of a linear warm-up (from 0 to base_lr over warmup_steps)
/// followed by a cosine decay to min_lr at total_steps. With warmup_steps = 0 it starts at
/// base_lr; past total_steps it stays at min_lr.
///
/// Warm-up: base_lr * (step + 1) / warmup_steps, so step warmup_steps - 1 uses base_lr. Then,
/// with p = (step - warmup_steps) / (total_steps - warmup_steps):
/// min_lr + (base_lr - min_lr) * (1 + cos(pi * p)) / 2.
/// @param step         0-based optimiser step
/// @param base_lr      peak learning rate
/// @param warmup_steps length of the warm-up, >= 0
/// @param total_steps  step at which the decay reaches min_lr
/// @param min_lr       final learning rate
/// @return the learning rate for `step`
inline double warmup_cosine_lr(std::int64_t step, double base_lr, std::int64_t warmup_steps,
                               std::int64_t total_steps, double min_lr = 0.0) {
  if (step < warmup_steps) return base_lr * double(step + 1) / double(warmup_steps);
  if (step >= total_steps || total_steps <= warmup_steps) return min_lr;
  const double progress = double(step - warmup_steps) / double(total_steps - warmup_steps);
  return min_lr + 0.5 * (base_lr - min_lr) * (1.0 + std::cos(3.14159265358979323846 * progress));
}

/// @brief torch.optim.lr_scheduler.ReduceLROnPlateau (mode 'min', threshold_mode 'rel'):
/// after `patience` epochs without a relative improvement of `threshold`, multiply the learning
/// rate by `factor` (not below min_lr), then wait `cooldown` epochs.
class ReduceOnPlateau {
 public:
  /// @brief A schedule starting at `lr`, with PyTorch's defaults.
  /// @param lr        initial learning rate
  /// @param factor    multiplier of a reduction, in (0, 1)
  /// @param patience  epochs without improvement tolerated before a reduction
  /// @param threshold relative improvement needed: metric < best * (1 - threshold)
  /// @param cooldown  epochs after a reduction during which bad epochs are not counted
  /// @param min_lr    lower bound of the learning rate
  /// @throws std::invalid_argument when factor is not in (0, 1)
  ReduceOnPlateau(double lr, double factor = 0.1, int patience = 10, double threshold = 1e-4,
                  int cooldown = 0, double min_lr = 0.0)
      : lr_(lr), factor_(factor), patience_(patience), threshold_(threshold), cooldown_(cooldown),
        min_lr_(min_lr) {
    if (!(factor > 0.0 && factor < 1.0)) throw std::invalid_argument("ReduceOnPlateau: factor must be in (0, 1)");
  }

  /// @brief Report the epoch's metric (lower is better); returns the learning rate to use next.
  /// @param metric the epoch's validation metric (e.g. loss)
  /// @return lr() after this epoch
  double step(double metric) {
    if (metric < best_ * (1.0 - threshold_)) {
      best_ = metric;
      bad_epochs_ = 0;
    } else {
      ++bad_epochs_;
    }
    if (cooldown_counter_ > 0) {
      --cooldown_counter_;
      bad_epochs_ = 0;
    }
    if (bad_epochs_ > patience_) {
      const double new_lr = std::max(lr_ * factor_, min_lr_);
      if (lr_ - new_lr > 1e-8) lr_ = new_lr;  // PyTorch's eps
      cooldown_counter_ = cooldown_;
      bad_epochs_ = 0;
    }
    return lr_;
  }

  /// @brief The current learning rate.
  double lr() const { return lr_; }
  /// @brief The best metric so far (+infinity before the first step()).
  double best() const { return best_; }
  /// @brief Consecutive epochs without improvement (state, saved in checkpoints).
  int bad_epochs() const { return bad_epochs_; }
  /// @brief Epochs of cooldown left (state, saved in checkpoints).
  int cooldown_counter() const { return cooldown_counter_; }
  /// @brief Restore the state saved in a checkpoint.
  /// @param lr               the saved lr()
  /// @param best             the saved best()
  /// @param bad_epochs       the saved bad_epochs()
  /// @param cooldown_counter the saved cooldown_counter()
  void restore(double lr, double best, int bad_epochs, int cooldown_counter) {
    lr_ = lr; best_ = best; bad_epochs_ = bad_epochs; cooldown_counter_ = cooldown_counter;
  }

 private:
  double lr_, factor_;
  int patience_;
  double threshold_;
  int cooldown_;
  double min_lr_;
  double best_ = std::numeric_limits<double>::infinity();
  int bad_epochs_ = 0;
  int cooldown_counter_ = 0;
};

}  // namespace vitiq
