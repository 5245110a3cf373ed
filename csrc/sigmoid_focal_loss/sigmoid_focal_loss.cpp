// Sigmoid focal loss (Lin et al., "Focal Loss for Dense Object Detection"): schemas of
// torch.ops.maskrcnn.sigmoid_focal_loss_forward / _backward.
//
// logits: [N, K] floating; targets: [N] integer in 0..K, where 0 is background and class c in 1..K
// is column c - 1. With p = sigmoid(logits[n, k]) and alpha, gamma:
//   positive entry (targets[n] == k + 1): loss = -alpha * (1 - p)^gamma * log(p)
//   negative entry (otherwise):           loss = -(1 - alpha) * p^gamma * log(1 - p)
// forward returns the elementwise loss [N, K]; backward returns grad_loss * d loss / d logits.
#include <torch/library.h>

TORCH_LIBRARY_FRAGMENT(maskrcnn, m) {
  m.def("sigmoid_focal_loss_forward(Tensor logits, Tensor targets, float gamma, float alpha) -> Tensor");
  m.def(
      "sigmoid_focal_loss_backward(Tensor logits, Tensor targets, Tensor grad_loss, float gamma, "
      "float alpha) -> Tensor");
}
