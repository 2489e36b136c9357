import pytest
import torch

from datafree.errors import DatafreeError
from datafree.utils.nonfinite import NonFiniteGuard, fused_adam, fused_sgd, load_optimizer_state


def _step(net, opt, guard, nan):
    loss = net(torch.randn(5, 16)).pow(2).mean()
    if nan:
        loss = loss * float("nan")
    opt.zero_grad()
    loss.backward()
    return guard.step(opt, loss, {"kd": loss})


@pytest.mark.parametrize("make", [
    lambda p: fused_sgd(p, lr=0.1, momentum=0.9, weight_decay=5e-4, nesterov=True),
    lambda p: fused_adam(p, lr=1e-2, weight_decay=5e-4),
])
def test_skipped_steps_leave_weights_and_optimizer_state_alone(make):
    torch.manual_seed(0)
    net, other = torch.nn.Linear(16, 4), torch.nn.Linear(16, 4)
    other.load_state_dict(net.state_dict())
    opt, opt_other = make(net.parameters()), make(other.parameters())
    guard, guard_other = NonFiniteGuard(torch.device("cpu"), ("kd",)), NonFiniteGuard(torch.device("cpu"), ("kd",))
    # A first step skipped (the case fused SGD gets wrong without zeroed momentum buffers), then good ones:
    # the same as never having had the bad steps.
    for nan in (True, False, True, True, False):
        torch.manual_seed(1)
        found = _step(net, opt, guard, nan)
        assert found.item() == float(nan)
        if not nan:
            torch.manual_seed(1)
            _step(other, opt_other, guard_other, False)
    for a, b in zip(net.parameters(), other.parameters()):
        assert torch.equal(a, b)
    assert guard.skipped.item() == 3 and guard.worst.item() == 2 and guard.term_bad.tolist() == [3.0]
    assert guard.check(torch.stack(guard.tensors()).tolist(), 5, None, "") == 3


def test_check_stops_after_max_in_row_and_names_the_term():
    guard = NonFiniteGuard(torch.device("cpu"), ("kd", "attention"), max_in_row=2, what="student step")
    with pytest.raises(DatafreeError, match=r"3 student steps in a row .*by student step 9 \(4 skipped in all; "
                                            r"non-finite loss terms: attention \(4 steps\), synthesizer term bn\)\. "
                                            r"The last good checkpoint is s.pt\. Fix it\."):
        guard.check([4, 3, 0, 4], 9, "s.pt", "Fix it.", {"bn": float("nan"), "ce": 1.0})
    with pytest.raises(DatafreeError, match="gradients were not.*No checkpoint had been written yet"):
        guard.check([2, 2, 0, 0], 2, None, "")
    with pytest.raises(DatafreeError, match="max_nonfinite"):
        NonFiniteGuard(torch.device("cpu"), (), max_in_row=0)


@pytest.mark.parametrize("make", [
    lambda p: fused_sgd(p, lr=0.1, momentum=0.9, weight_decay=5e-4, nesterov=True),
    lambda p: fused_adam(p, lr=0.1),
], ids=["sgd", "adam"])
def test_state_saved_in_another_layout_resumes_as_if_saved_in_this_one(make):
    """A run saved while a network was NCHW, resumed where it runs channels_last: a fused step pairs a weight with its
    buffers in memory order, so the saved buffers must take the weight's layout (else weights move by others' moments)."""
    torch.manual_seed(0)
    weight, grads = torch.randn(4, 3, 3, 3), [torch.randn(4, 3, 3, 3) for _ in range(2)]

    def resumed(layout) -> torch.Tensor:
        saved_as = torch.nn.Parameter(weight.clone())  # NCHW, as the old run had it
        opt = make([saved_as])
        saved_as.grad = grads[0].clone()
        opt.step()
        param = torch.nn.Parameter(saved_as.detach().clone().contiguous(memory_format=layout))
        resumed_opt = make([param])
        load_optimizer_state(resumed_opt, opt.state_dict())
        param.grad = grads[1].clone().contiguous(memory_format=layout)
        resumed_opt.step()
        return param.detach().contiguous()

    # without the re-layout the channels_last weights came out off by up to 0.28 (SGD) and 0.16 (Adam) on the CPU
    torch.testing.assert_close(resumed(torch.channels_last), resumed(torch.contiguous_format), rtol=0, atol=0)
