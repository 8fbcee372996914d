"""`timestep_type: weighted` means ai-toolkit's `weighted`; the timestep reaches the transformer in fp32."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from zlt.trainer.loss import flow_matching_loss, sample_sigmas, timestep_weights  # noqa: E402
from zlt.trainer.weighting_table import AITOOLKIT_WEIGHTED  # noqa: E402

UPSTREAM = ("ostris/ai-toolkit@27a03a91 toolkit/timestep_weighing/default_weighing_scheme.py, read by "
            "toolkit/samplers/custom_flowmatch_sampler.py get_weights_for_timesteps")


def test_the_table_is_ai_toolkits():
    # upstream facts: 1000 entries (one per timestep of linspace(1000, 1, 1000)), mean 1, these values
    t = AITOOLKIT_WEIGHTED
    assert len(t) == 1000, UPSTREAM
    assert t[0] == pytest.approx(0.905706524848938), UPSTREAM
    assert t[1] == pytest.approx(0.9097874164581299), UPSTREAM
    assert t[500] == pytest.approx(0.9254037141799927), UPSTREAM
    assert t[999] == pytest.approx(0.4472601115703583), UPSTREAM
    assert max(t) == pytest.approx(1.5226575136184692) and t.index(max(t)) == 124, UPSTREAM
    assert sum(t) / len(t) == pytest.approx(1.0, abs=1e-6), UPSTREAM
    # sigma >= 0.7 (indices 0..300) carries ~42% of the loss weight under uniform sampling (issue 12, item 11)
    assert sum(t[:301]) / sum(t) == pytest.approx(0.4187, abs=1e-3), UPSTREAM


def test_weights_look_up_the_table_by_sigma():
    # index i is timestep 1000 - i, i.e. sigma (1000 - i) / 1000: index 0 is pure noise
    sig = torch.tensor([1.0, 0.999, 0.876, 0.5, 0.001, 0.0001])
    w = timestep_weights(sig, "weighted")
    expected = [AITOOLKIT_WEIGHTED[i] for i in (0, 1, 124, 500, 999, 999)]
    assert w.dtype == torch.float32 and w.tolist() == pytest.approx(expected)
    assert torch.equal(timestep_weights(sig, "sigmoid"), torch.ones(6))


def test_weighted_samples_uniformly_like_ai_toolkit():
    # ai-toolkit picks a uniform timestep index for 'weighted' (BaseSDTrainProcess, content_or_style balanced):
    # about 30% of sigmas lie at or above 0.7, not the 20% of a bell
    s = sample_sigmas(40_000, "weighted", torch.Generator().manual_seed(0))
    assert abs(float((s >= 0.7).float().mean()) - 0.30) < 0.01


def test_loss_is_weighted_per_sample():
    def model(xs, t, caps, return_dict=False):
        return ([torch.zeros_like(x) for x in xs],)

    x0 = [torch.zeros(2, 1, 1), torch.zeros(2, 1, 1)]
    noise = [torch.ones(2, 1, 1), 2 * torch.ones(2, 1, 1)]
    sig = torch.tensor([0.5, 0.5])
    plain = flow_matching_loss(model, x0, [None, None], sig, noise)
    weighted = flow_matching_loss(model, x0, [None, None], sig, noise, weights=torch.tensor([2.0, 0.5]))
    assert float(plain) == pytest.approx((1 + 4) / 2) and float(weighted) == pytest.approx((2 * 1 + 0.5 * 4) / 2)


def test_timestep_stays_fp32_through_fabric_bf16_mixed():
    from lightning_fabric import Fabric

    from zlt.trainer.timestep import TimestepFp32, box

    seen = {}

    class Recorder(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.ones(1))

        def forward(self, x, t, caps, return_dict=False):
            seen["t"] = t
            return ([xi * self.w for xi in x],)

    fabric = Fabric(accelerator="cpu", devices=1, precision="bf16-mixed")
    model = fabric.setup_module(TimestepFp32(Recorder()))
    t = torch.tensor([0.87654])
    model([torch.ones(1)], t, [None])
    assert seen["t"].dtype == torch.bfloat16 and float(seen["t"]) == 0.875  # what the plugin does to a bare tensor
    model([torch.ones(1)], box(t), [None])
    assert seen["t"].dtype == torch.float32 and float(seen["t"]) == pytest.approx(0.87654, abs=1e-7)


def test_the_trainer_weights_its_loss_by_the_table(tmp_path):
    import io

    from tests.unit.test_trainer_fixtures import make_images, tiny_config
    from zlt.trainer.emit import EventWriter
    from zlt.trainer.loop import Trainer

    data = make_images(tmp_path / "ds", n=2)
    losses, sigma = {}, None
    for kind in ("uniform", "weighted"):  # both draw sigma ~ U(0,1) from the same stream
        cfg = tiny_config(tmp_path / kind, data, training={"timestep_type": kind, "batch_size": 1, "max_steps": 1},
                          cache={"dir": str(tmp_path / "cache")})
        t = Trainer(cfg, EventWriter(io.StringIO(), interval_s=0.0))
        t.setup()
        probe = torch.Generator()
        probe.set_state(t.gen.get_state())
        sigma = sample_sigmas(1, "uniform", probe)
        losses[kind] = float(t.micro_step(t._next_group(), accumulate=False))
    w = float(timestep_weights(sigma, "weighted")[0])
    assert abs(w - 1) > 0.02  # this seed's sigma has a weight that shows
    assert losses["weighted"] == pytest.approx(losses["uniform"] * w, rel=1e-5)
