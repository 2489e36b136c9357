"""GPU checks of the synthetic data set paths: the audit search, the shard stream and the offline step never sync."""
import pytest
import torch

from fakes import AimingSynthesizer, red_teacher
from datafree.distill.losses import KDLoss
from datafree.distill.sources import StoredSource
from datafree.distill.trainer import Distiller
from datafree.export import SyntheticSet, synthesize_dataset
from datafree.export.audit import nearest, penultimate_features, pixel_search
from datafree.models import create_model
from datafree.teachers import Normalized

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]


def _no_sync(fn):
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        return fn()
    finally:
        torch.cuda.set_sync_debug_mode("default")


def test_audit_search_is_chunked_exact_and_does_not_sync():
    device = torch.device("cuda")
    torch.manual_seed(0)
    keys_u8 = torch.randint(0, 256, (3000, 3, 32, 32), dtype=torch.uint8, device=device)
    queries = torch.randint(0, 256, (1000, 3, 32, 32), dtype=torch.uint8, device=device)
    queries[17] = keys_u8[2021]
    queries[400] = keys_u8[5].flip(-1)
    keys = keys_u8.float().div(255).flatten(1)
    budget = 4 * 3000 * 128  # 128 query rows per chunk: eight chunks
    found = _no_sync(lambda: pixel_search(queries, keys, True, budget))
    assert int(found.index[17]) == 2021 and float(found.distance[17]) == 0.0 and not bool(found.flipped[17])
    assert int(found.index[400]) == 5 and float(found.distance[400]) == 0.0 and bool(found.flipped[400])
    exact = "donot_use_mm_for_euclid_dist"
    brute = torch.cdist(queries.float().div(255).flatten(1), keys, compute_mode=exact).div(3072 ** 0.5)
    distance, index = nearest(queries, keys, "l2", budget, transform=lambda q: q.float().div(255).flatten(1))
    assert torch.equal(index, brute.argmin(1)) and torch.allclose(distance, brute.min(1).values, atol=1e-5)

    model = Normalized(create_model("resnet18", num_classes=10), (0.5,) * 3, (0.25,) * 3).to(device).eval()
    penultimate_features(model, queries[:256], 128, True)  # warm-up: cuDNN autotuning may sync
    features = _no_sync(lambda: penultimate_features(model, queries, 128, True))
    assert features.shape == (1000, 512) and torch.allclose(features.norm(dim=1), torch.ones(1000, device=device))


def test_shard_stream_and_offline_step_do_not_sync(tmp_path):
    device = torch.device("cuda")
    synthesize_dataset(red_teacher(size=32), AimingSynthesizer(batch_size=64), tmp_path / "set", 512, shard_size=128,
                       progress=False, log=lambda _: None)
    student = Normalized(create_model("resnet18", num_classes=4), (0.0,) * 3, (1.0,) * 3).to(device)
    source = StoredSource(SyntheticSet(tmp_path / "set"), crop_padding=4, device_budget_mb=2048, seed=0)
    distiller = Distiller.from_options(None, student.to(memory_format=torch.channels_last), source, device=device,
                                       num_classes=4, input_size=(3, 32, 32), batch_size=64, lr=0.05,
                                       loss=KDLoss(temperature=1.0), progress=False)
    distiller._update()  # warm-up; loads the set onto the device once

    def steps():
        for _ in range(20):  # more than one pass over the set: the reshuffle stays on the device
            value = distiller._update()
        return value

    value = _no_sync(steps)
    assert torch.isfinite(value).all() and source.batches.epoch >= 1
