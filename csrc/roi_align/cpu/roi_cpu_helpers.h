// CPU helpers shared by the RoIAlign and RoIPool kernels: RoIs grouped by the image they read, and
// a parallel loop over gradient planes that each thread owns.
#pragma once

#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <cstdint>
#include <type_traits>
#include <vector>

namespace maskrcnn {
namespace roi {

// The RoIs of image n are order[begin[n]] ... order[begin[n + 1] - 1], in their original order.
struct RoisByImage {
  std::vector<int64_t> order;
  std::vector<int64_t> begin;
};

// rois: contiguous [num_rois, 5] whose column 0 holds batch indices; checks each is in [0, num_images).
template <typename scalar_t>
RoisByImage group_rois_by_image(const char* op, const scalar_t* rois, int64_t num_rois, int64_t num_images) {
  RoisByImage groups;
  groups.begin.assign(num_images + 1, 0);
  std::vector<int64_t> image_of(num_rois);
  for (int64_t k = 0; k < num_rois; ++k) {
    const double index = static_cast<double>(rois[k * 5]);
    TORCH_CHECK(
        index >= 0 && index < static_cast<double>(num_images), op, ": rois[", k, ", 0] = ", index,
        " is not a batch index of the input (batch size ", num_images, ")");
    image_of[k] = static_cast<int64_t>(index);
    ++groups.begin[image_of[k] + 1];
  }
  for (int64_t n = 0; n < num_images; ++n) groups.begin[n + 1] += groups.begin[n];
  groups.order.resize(num_rois);
  std::vector<int64_t> cursor(groups.begin.begin(), groups.begin.end() - 1);
  for (int64_t k = 0; k < num_rois; ++k) groups.order[cursor[image_of[k]]++] = k;
  return groups;
}

// Grain size for at::parallel_for over planes: enough planes per task that a task does at least
// ~64k elementary steps, so that small problems (tests, a few RoIs) stay on the calling thread.
inline int64_t plane_grain(int64_t steps_per_plane) {
  constexpr int64_t kMinStepsPerTask = int64_t(1) << 16;
  return std::max<int64_t>(1, kMinStepsPerTask / std::max<int64_t>(1, steps_per_plane));
}

// Task t of a parallel loop over the num_images * channels planes of an NCHW tensor handles plane
// (t % num_images) * channels + t / num_images: channel-major, so that every thread's share of the
// planes mixes the images (whose RoI counts may differ).
inline int64_t plane_of_task(int64_t task, int64_t num_images, int64_t channels) {
  return (task % num_images) * channels + task / num_images;
}

// Calls body(plane, acc) for every plane of grad_input (num_images * channels planes of plane_size
// elements) in parallel (at least `grain` planes per task), acc pointing at plane_size zeros of acc_t
// that end up in that plane: the plane itself when acc_t is scalar_t, else a per-thread buffer
// converted into it afterwards. A thread owns its planes.
template <typename scalar_t, typename acc_t, typename Body>
void for_each_gradient_plane(
    scalar_t* grad_input, int64_t num_images, int64_t channels, int64_t plane_size, int64_t grain,
    const Body& body) {
  at::parallel_for(0, num_images * channels, grain, [&](int64_t first, int64_t last) {
    std::vector<acc_t> scratch;
    for (int64_t task = first; task < last; ++task) {
      const int64_t plane = plane_of_task(task, num_images, channels);
      scalar_t* out = grad_input + plane * plane_size;
      acc_t* acc;
      if constexpr (std::is_same_v<scalar_t, acc_t>) {
        acc = out;
      } else {
        scratch.resize(plane_size);
        acc = scratch.data();
      }
      std::fill(acc, acc + plane_size, acc_t(0));
      body(plane, acc);
      if constexpr (!std::is_same_v<scalar_t, acc_t>) {
        for (int64_t p = 0; p < plane_size; ++p) out[p] = static_cast<scalar_t>(acc[p]);
      }
    }
  });
}

}  // namespace roi
}  // namespace maskrcnn
