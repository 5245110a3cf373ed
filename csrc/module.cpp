// The Python module maskrcnn._C and the `maskrcnn` operator library.
//
// Each op lives in csrc/<op>/: <op>.cpp declares its schema with TORCH_LIBRARY_FRAGMENT(maskrcnn, m),
// cpu/ and cuda/ register kernels with TORCH_LIBRARY_IMPL(maskrcnn, CPU|CUDA, m). Importing this
// module (maskrcnn._C) runs those registrations, after which the ops are torch.ops.maskrcnn.*.
//
// The module itself only carries build facts. It uses the plain CPython API rather than
// torch/extension.h, so that this file compiles in seconds; the facts come from a header that
// setup.py generates (outside csrc/) and only this file includes, so a change to one kernel
// recompiles that kernel and this file, not everything.
#include <Python.h>
#include <torch/library.h>

#include "maskrcnn_build_info.h"

TORCH_LIBRARY(maskrcnn, m) {
  // Schemas are declared by each op's own fragment (csrc/<op>/<op>.cpp).
}

namespace {

PyObject* compiled_with_cuda(PyObject*, PyObject*) {
#ifdef WITH_CUDA
  Py_RETURN_TRUE;
#else
  Py_RETURN_FALSE;
#endif
}

PyMethodDef module_methods[] = {
    {"compiled_with_cuda", compiled_with_cuda, METH_NOARGS, "True when the CUDA kernels were built"},
    {nullptr, nullptr, 0, nullptr},
};

PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT,
    "_C",
    "maskrcnn compiled ops; the ops themselves are torch.ops.maskrcnn.*",
    -1,
    module_methods,
};

}  // namespace

PyMODINIT_FUNC PyInit__C(void) {
  PyObject* module = PyModule_Create(&module_def);
  if (module == nullptr) {
    return nullptr;
  }
  if (PyModule_AddStringConstant(module, "sources_digest", MASKRCNN_SOURCES_DIGEST) < 0 ||
      PyModule_AddStringConstant(module, "torch_version", MASKRCNN_TORCH_VERSION) < 0) {
    Py_DECREF(module);
    return nullptr;
  }
  return module;
}
