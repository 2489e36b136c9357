"""CapturedStep and the tensor learning rate: eager on the CPU, and the trainer's choice of when to capture."""
import pytest
import torch

from datafree.distill.trainer import Distiller
from datafree.synthesizers import Augment, NoiseSynthesizer
from datafree.utils.graphs import CapturedStep, set_lr, tensor_lr
from nets import TinyBNNet


def test_captured_step_runs_eagerly_on_the_cpu():
    calls = []
    step = CapturedStep(lambda: calls.append(1) or len(calls), torch.device("cpu"))
    assert [step() for _ in range(5)] == [1, 2, 3, 4, 5] and step.graph is None and not step.enabled


def test_tensor_learning_rate_steps_like_a_float():
    torch.manual_seed(0)
    a, b = torch.nn.Linear(3, 2), torch.nn.Linear(3, 2)
    b.load_state_dict(a.state_dict())
    opt_a = torch.optim.SGD(a.parameters(), lr=0.1, momentum=0.9)
    opt_b = torch.optim.SGD(b.parameters(), lr=0.1, momentum=0.9)
    tensor_lr(opt_b)
    x = torch.randn(8, 3)
    for lr in (0.1, 0.05, 0.01):
        set_lr(opt_a, lr)
        set_lr(opt_b, lr)
        for model, opt in ((a, opt_a), (b, opt_b)):
            opt.zero_grad()
            model(x).square().sum().backward()
            opt.step()
    assert isinstance(opt_b.param_groups[0]["lr"], torch.Tensor) and opt_b.param_groups[0]["lr"].item() == pytest.approx(0.01)
    for p, q in zip(a.parameters(), b.parameters()):
        assert torch.allclose(p, q)


def _distiller(**kw):
    options = dict(device=torch.device("cpu"), num_classes=4, input_size=(3, 8, 8), batch_size=8, amp=False,
                   progress=False, cuda_graphs=True)
    options.update(kw)
    return Distiller.from_options(TinyBNNet().eval(), TinyBNNet(), NoiseSynthesizer(batch_size=8), **options)


def test_cuda_graphs_are_ignored_on_the_cpu():
    d = _distiller()
    assert d._captured is None and not isinstance(d.optimizer.param_groups[0]["lr"], torch.Tensor)


def test_what_cannot_be_captured_runs_eagerly_and_what_cannot_make_batches_in_the_graph_copies_them(monkeypatch):
    """Asked for on a GPU (only the plan is asked: nothing runs there): a step with a hooked term runs eagerly,
    said why; batches that cannot be made inside the graph (kornia augmentation) are copied into its buffers."""
    import kornia.augmentation as K

    layers = {"teacher_layers": ["features.2"], "student_layers": ["features.2"]}
    for options, captured, said in ((dict(attention={"weight": 1.0, **layers}), False, "runs eagerly"),
                                    (dict(augment=Augment(extra=[K.ColorJitter(0.1, p=1.0)])), True, "copied into")):
        notes = []
        d = _distiller(**options)
        d.device = torch.device("cuda")
        monkeypatch.setattr(d.outputs.logger, "info", notes.append)
        monkeypatch.setattr("datafree.distill.trainer.tensor_lr", lambda optimizer: None)
        assert (d._capture_plan() is not None) == captured and said in notes[-1], notes
        if captured:
            assert "kornia" in notes[-1] and d._copied_in
