// The Python module maskrcnn._C and the `maskrcnn` operator library.
//
// Each op lives in csrc/<op>/: <op>.cpp declares its schema with TORCH_LIBRARY_FRAGMENT(maskrcnn, m),
// cpu/ and cuda/ register kernels with TORCH_LIBRARY_IMPL(maskrcnn, CPU|CUDA, m). Importing this
// module (maskrcnn._C) runs those registrations, after which the ops are torch.ops.maskrcnn.*.
#include <torch/extension.h>

#ifndef MASKRCNN_SOURCES_DIGEST
#define MASKRCNN_SOURCES_DIGEST "unknown"
#endif
#ifndef MASKRCNN_TORCH_VERSION
#define MASKRCNN_TORCH_VERSION "unknown"
#endif

TORCH_LIBRARY(maskrcnn, m) {
  // Schemas are declared by each op's own fragment (csrc/<op>/<op>.cpp).
}

namespace {
bool compiled_with_cuda() {
#ifdef WITH_CUDA
  return true;
#else
  return false;
#endif
}
}  // namespace

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.doc() = "maskrcnn compiled ops; the ops themselves are torch.ops.maskrcnn.*";
  m.def("compiled_with_cuda", &compiled_with_cuda, "True when the CUDA kernels were built");
  m.attr("sources_digest") = MASKRCNN_SOURCES_DIGEST;
  m.attr("torch_version") = MASKRCNN_TORCH_VERSION;
}
