"""Flow-matching loss and timestep samplers."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from zlt.trainer.loss import flow_matching_loss, sample_sigmas, shift_sigmas  # noqa: E402

N = 20000


def draw(kind: str, **kw):
    return sample_sigmas(N, kind, torch.Generator().manual_seed(0), **kw)


@pytest.mark.parametrize("kind", ["uniform", "sigmoid", "shift", "weighted"])
def test_sigmas_in_range_and_reproducible(kind):
    s = draw(kind)
    assert s.dtype == torch.float32 and s.shape == (N,)
    assert 0 < float(s.min()) and float(s.max()) < 1
    assert torch.equal(s, draw(kind))


def test_sampler_shapes():
    mid = lambda s: float(((s > 0.25) & (s < 0.75)).float().mean())  # noqa: E731
    uniform, sigmoid, weighted, shift = draw("uniform"), draw("sigmoid"), draw("weighted"), draw("shift")
    assert abs(float(uniform.mean()) - 0.5) < 0.01 and abs(mid(uniform) - 0.5) < 0.02
    assert abs(float(sigmoid.mean()) - 0.5) < 0.01 and mid(sigmoid) > 0.6
    # ai-toolkit's `weighted` draws its timesteps uniformly and weights the loss instead (test_trainer_weighting)
    assert abs(float(weighted.mean()) - 0.5) < 0.01 and abs(float((weighted >= 0.7).float().mean()) - 0.3) < 0.02
    assert float(shift.mean()) > 0.65  # shifted towards noise like the turbo scheduler
    assert float(draw("uniform", content_or_style="content").mean()) > 0.7
    assert float(draw("uniform", content_or_style="style").mean()) < 0.3


def test_shift_formula():
    assert float(shift_sigmas(torch.tensor(0.5), 3.0)) == pytest.approx(0.75)
    assert float(shift_sigmas(torch.tensor(0.3), 1.0)) == pytest.approx(0.3)


def test_flow_matching_loss_matches_the_formula():
    seen = {}

    def model(xs, t, caps, return_dict=False):
        seen["x"], seen["t"], seen["caps"] = xs, t, caps
        return ([0.5 * x for x in xs],)

    g = torch.Generator().manual_seed(1)
    x0 = [torch.randn(16, 4, 6, generator=g) for _ in range(2)]
    noise = [torch.randn(16, 4, 6, generator=g) for _ in range(2)]
    sig = torch.tensor([0.2, 0.9])
    caps = [torch.randn(5, 16), torch.randn(9, 16)]
    loss = flow_matching_loss(model, x0, caps, sig, noise)
    assert torch.allclose(seen["t"], 1 - sig)
    assert seen["x"][0].shape == (16, 1, 4, 6) and seen["caps"] is caps
    expected = []
    for a, n, s in zip(x0, noise, sig, strict=True):
        xt = (1 - s) * a + s * n
        expected.append(((-0.5 * xt) - (n - a)).pow(2).mean())
    assert float(loss) == pytest.approx(float(torch.stack(expected).mean()), rel=1e-6)


def test_perfect_velocity_gives_zero_loss():
    g = torch.Generator().manual_seed(2)
    x0 = [torch.randn(16, 2, 2, generator=g)]
    noise = [torch.randn(16, 2, 2, generator=g)]
    model = lambda xs, t, caps, return_dict=False: ([-(noise[0] - x0[0]).unsqueeze(1)],)  # noqa: E731
    assert float(flow_matching_loss(model, x0, [torch.zeros(3, 16)], torch.tensor([0.4]), noise)) == 0.0
