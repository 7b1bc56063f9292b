// LeakyReLU with a chosen slope. tch's generated API drops scalar arguments that have a default, so
// its leaky_relu is fixed at libtorch's 0.01; DCGAN's is 0.2. This calls the ATen op directly.
//
// The tensor handles are tch's: a heap-allocated at::Tensor, freed by tch when the Rust Tensor drops.

#include <ATen/ops/leaky_relu.h>

#include <cstring>
#include <exception>

extern "C" at::Tensor *dcgan_leaky_relu(const at::Tensor *x, double slope, int in_place, char *error, size_t error_len) {
  try {
    if (in_place) {
      at::Tensor y = *x;  // shares x's storage and autograd history
      at::leaky_relu_(y, slope);
      return new at::Tensor(std::move(y));
    }
    return new at::Tensor(at::leaky_relu(*x, slope));
  } catch (const std::exception &e) {
    if (error_len > 0) {
      std::strncpy(error, e.what(), error_len - 1);
      error[error_len - 1] = '\0';
    }
    return nullptr;
  }
}
