"""maskrcnn.layers.sigmoid_focal_loss against the focal-loss formula evaluated here in float64."""
import pytest
import torch
import torch.nn.functional as F

from maskrcnn.layers import SigmoidFocalLoss, sigmoid_focal_loss

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
forward_op = torch.ops.maskrcnn.sigmoid_focal_loss_forward
backward_op = torch.ops.maskrcnn.sigmoid_focal_loss_backward


def reference_loss(logits, targets, gamma, alpha):
    """Elementwise focal loss [N, K] in float64; targets 0 = background, c = column c - 1."""
    x = logits.double()
    positive = (targets[:, None] == torch.arange(1, x.shape[1] + 1)[None]).double()
    log_p, log_q = F.logsigmoid(x), F.logsigmoid(-x)  # log p, log(1 - p)
    p_pow, q_pow = torch.exp(gamma * log_p), torch.exp(gamma * log_q)  # p^gamma, (1 - p)^gamma
    return -positive * alpha * q_pow * log_p - (1 - positive) * (1 - alpha) * p_pow * log_q


def random_inputs(n, k, seed, scale=4.0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    logits = (torch.randn(n, k, generator=g) * scale).to(dtype)
    targets = torch.randint(0, k + 1, (n,), generator=g)
    return logits, targets


@pytest.mark.parametrize("gamma", [0.0, 1.0, 1.5, 2.0])
@pytest.mark.parametrize("alpha", [0.25, 0.5])
def test_forward_matches_formula_float64(gamma, alpha):
    logits, targets = random_inputs(64, 9, seed=int(gamma * 10))
    expected = reference_loss(logits, targets, gamma, alpha)
    torch.testing.assert_close(forward_op(logits, targets, gamma, alpha), expected, rtol=1e-12, atol=1e-300)


@pytest.mark.parametrize("gamma", [0.0, 2.0, 2.5])
def test_forward_and_backward_float32(gamma):
    logits, targets = random_inputs(257, 13, seed=3, dtype=torch.float32)
    expected = reference_loss(logits, targets, gamma, 0.25)
    torch.testing.assert_close(forward_op(logits, targets, gamma, 0.25).double(), expected, rtol=1e-5, atol=1e-30)
    grad = torch.rand(logits.shape, generator=torch.Generator().manual_seed(0))
    x = logits.double().requires_grad_()
    reference_loss(x, targets, gamma, 0.25).backward(grad.double())
    got = backward_op(logits, targets, grad, gamma, 0.25)
    torch.testing.assert_close(got.double(), x.grad, rtol=2e-5, atol=1e-30)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
@pytest.mark.parametrize("gamma", [2.0, 1.0])
def test_backward_with_broadcast_grad(dtype, gamma):
    # The gradient of loss.sum() reaches the backward as one value expanded to [N, K].
    logits, targets = random_inputs(50, 7, seed=12, dtype=dtype)
    expanded = torch.tensor(0.7, dtype=dtype).expand(logits.shape)
    got = backward_op(logits, targets, expanded, gamma, 0.25)
    expected = backward_op(logits, targets, expanded.contiguous(), gamma, 0.25)
    torch.testing.assert_close(got, expected, rtol=0, atol=0)
    x = logits.double().requires_grad_()
    reference_loss(x, targets, gamma, 0.25).backward(torch.full(logits.shape, 0.7, dtype=torch.float64))
    tol = 2e-2 if dtype == torch.bfloat16 else 2e-5
    torch.testing.assert_close(got.double(), x.grad, rtol=tol, atol=tol * 1e-3)


def test_extreme_logits_are_finite_and_accurate():
    logits = torch.tensor([[0.0, 1e-8, -1e-8, 30.0, -30.0, 90.0, -90.0, 1e4, -1e4]])
    for dtype in (torch.float32, torch.float64):
        for target in range(0, 10):
            t = torch.tensor([target])
            loss = forward_op(logits.to(dtype), t, 2.0, 0.25)
            grad = backward_op(logits.to(dtype), t, torch.ones_like(logits, dtype=dtype), 2.0, 0.25)
            assert torch.isfinite(loss).all() and torch.isfinite(grad).all()
            expected = reference_loss(logits, t, 2.0, 0.25)
            torch.testing.assert_close(loss.double(), expected, rtol=1e-5, atol=1e-30)


def test_gradcheck_float64():
    logits, targets = random_inputs(6, 5, seed=1, scale=3.0)
    logits.requires_grad_()
    for gamma, alpha in ((2.0, 0.25), (0.0, 0.5), (1.5, 0.75)):
        assert torch.autograd.gradcheck(lambda x: forward_op(x, targets, gamma, alpha), (logits,))


def test_wrapper_sums_and_module():
    logits, targets = random_inputs(20, 4, seed=2, dtype=torch.float32)
    logits.requires_grad_()
    module = SigmoidFocalLoss(gamma=2.0, alpha=0.25)
    assert repr(module) == "SigmoidFocalLoss(gamma=2.0, alpha=0.25)"
    loss = module(logits, targets)
    assert loss.dim() == 0
    torch.testing.assert_close(loss.double(), reference_loss(logits.detach(), targets, 2.0, 0.25).sum(), rtol=1e-5, atol=0)
    loss.backward()
    x = logits.detach().double().requires_grad_()
    reference_loss(x, targets, 2.0, 0.25).sum().backward()
    torch.testing.assert_close(logits.grad.double(), x.grad, rtol=1e-4, atol=1e-7)
    torch.testing.assert_close(sigmoid_focal_loss(logits, targets, 2.0, 0.25), loss)


def test_non_contiguous_and_int32_targets():
    logits, targets = random_inputs(10, 6, seed=4)
    wide = torch.randn(6, 10, dtype=torch.float64)
    wide.copy_(logits.t())
    expected = reference_loss(logits, targets, 2.0, 0.25)
    torch.testing.assert_close(forward_op(wide.t(), targets.int(), 2.0, 0.25), expected)


def test_empty_inputs():
    assert forward_op(torch.zeros(0, 5), torch.zeros(0, dtype=torch.int64), 2.0, 0.25).shape == (0, 5)
    grad = backward_op(torch.zeros(0, 5), torch.zeros(0, dtype=torch.int64), torch.zeros(0, 5), 2.0, 0.25)
    assert grad.shape == (0, 5)
    assert forward_op(torch.zeros(3, 0), torch.zeros(3, dtype=torch.int64), 2.0, 0.25).shape == (3, 0)
    logits = torch.zeros(0, 5, requires_grad=True)
    sigmoid_focal_loss(logits, torch.zeros(0, dtype=torch.int64), 2.0, 0.25).backward()
    assert logits.grad.shape == (0, 5)


@pytest.mark.parametrize(
    "logits, targets, message",
    [
        (torch.zeros(3), torch.zeros(3, dtype=torch.int64), r"logits must be a 2-D tensor of shape \[N, K\], got \[3\]"),
        (torch.zeros(3, 2, dtype=torch.int64), torch.zeros(3, dtype=torch.int64), r"logits must be a floating-point tensor"),
        (torch.zeros(3, 2), torch.zeros(4, dtype=torch.int64), r"targets must be a 1-D tensor of shape \[N\] matching logits"),
        (torch.zeros(3, 2), torch.zeros(3, 1, dtype=torch.int64), r"targets must be a 1-D tensor"),
        (torch.zeros(3, 2), torch.zeros(3), r"targets must be an integer \(int64\) tensor"),
        (torch.zeros(3, 2), torch.tensor([0, 3, 1]), r"targets must lie in 0\.\.2 .* got 3 at index 1"),
        (torch.zeros(3, 2), torch.tensor([0, -1, 1]), r"targets must lie in 0\.\.2 .* got -1 at index 1"),
    ],
)
def test_bad_inputs(logits, targets, message):
    with pytest.raises(RuntimeError, match="sigmoid_focal_loss_forward: " + message):
        forward_op(logits, targets, 2.0, 0.25)


def test_bad_grad_shape():
    with pytest.raises(RuntimeError, match=r"sigmoid_focal_loss_backward: grad_loss must have the shape of logits"):
        backward_op(torch.zeros(3, 2), torch.zeros(3, dtype=torch.int64), torch.zeros(2, 3), 2.0, 0.25)


def _focal(logits, targets):
    return sigmoid_focal_loss(logits * 1.0, targets, 2.0, 0.25)


def test_torch_compile_fullgraph_forward_and_backward():
    logits, targets = random_inputs(32, 8, seed=5, dtype=torch.float32)
    compiled = torch.compile(_focal, fullgraph=True, backend="aot_eager")
    results = []
    for fn in (compiled, _focal):
        x = logits.clone().requires_grad_()
        loss = fn(x, targets)
        loss.backward()
        results.append((loss.detach(), x.grad))
    torch.testing.assert_close(results[0], results[1])


def test_torch_export():
    module = SigmoidFocalLoss(2.0, 0.25)
    logits, targets = random_inputs(16, 8, seed=6, dtype=torch.float32)
    exported = torch.export.export(module, (logits, targets))
    graph_ops = {str(node.target) for node in exported.graph.nodes if node.op == "call_function"}
    assert "maskrcnn.sigmoid_focal_loss_forward.default" in graph_ops
    logits2, targets2 = random_inputs(16, 8, seed=7, dtype=torch.float32)
    torch.testing.assert_close(exported.module()(logits2, targets2), module(logits2, targets2))


def test_cpu_autocast_runs_in_float32():
    logits, targets = random_inputs(32, 8, seed=8, dtype=torch.float32)
    logits_bf16 = logits.bfloat16().requires_grad_()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = sigmoid_focal_loss(logits_bf16, targets, 2.0, 0.25)
    assert loss.dtype == torch.float32
    loss.backward()
    assert logits_bf16.grad.dtype == torch.bfloat16 and torch.isfinite(logits_bf16.grad.float()).all()
    torch.testing.assert_close(loss, sigmoid_focal_loss(logits_bf16.detach().float(), targets, 2.0, 0.25))


def test_reduced_precision_kernels():
    logits, targets = random_inputs(40, 6, seed=9, dtype=torch.float32)
    expected = reference_loss(logits, targets, 2.0, 0.25)
    for dtype, tol in ((torch.bfloat16, 2e-2), (torch.float16, 2e-3)):
        got = forward_op(logits.to(dtype), targets, 2.0, 0.25)
        assert got.dtype == dtype
        torch.testing.assert_close(got.double(), reference_loss(logits.to(dtype), targets, 2.0, 0.25), rtol=tol, atol=tol)
    assert expected.shape == (40, 6)


@needs_cuda
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16, torch.bfloat16])
def test_cuda_matches_cpu(dtype):
    logits, targets = random_inputs(300, 11, seed=10, dtype=dtype)
    grad = torch.rand(logits.shape).to(dtype)
    tol = {torch.float32: 1e-5, torch.float64: 1e-12, torch.float16: 2e-3, torch.bfloat16: 2e-2}[dtype]
    cpu_loss = forward_op(logits, targets, 2.0, 0.25)
    cuda_loss = forward_op(logits.cuda(), targets.cuda(), 2.0, 0.25)
    torch.testing.assert_close(cuda_loss.cpu(), cpu_loss, rtol=tol, atol=tol)
    cpu_grad = backward_op(logits, targets, grad, 2.0, 0.25)
    cuda_grad = backward_op(logits.cuda(), targets.cuda(), grad.cuda(), 2.0, 0.25)
    torch.testing.assert_close(cuda_grad.cpu(), cpu_grad, rtol=tol, atol=tol)
    assert forward_op(logits[:0].cuda(), targets[:0].cuda(), 2.0, 0.25).shape == (0, 11)
