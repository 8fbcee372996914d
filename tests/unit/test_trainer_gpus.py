"""`zlt train --gpus 0,1`: the built-in trainer gets one DDP process per listed GPU."""

from __future__ import annotations

from zlt.backends.lightning import LIGHTNING
from zlt.backends.lightning.render import trainer_config_from_render
from zlt.cli.impl.train import gpu_sets
from zlt.profiles import get_profile
from zlt.render.base import RenderContext
from zlt.spec.load import load_spec_data


def test_gpus_option_sets_the_device_count_for_ddp():
    sets = gpu_sets([], [0, 1])
    assert sets == ["job.resources.gpu=2"]
    spec = load_spec_data({"preset": "style", "dataset": {"path": "/d"}}, sets=sets).spec
    cfg = trainer_config_from_render(LIGHTNING.render(spec, get_profile("48gb"), RenderContext()))
    assert (cfg.runtime.accelerator, cfg.runtime.devices, cfg.runtime.strategy) == ("cuda", 2, "ddp")


def test_an_explicit_set_wins_and_no_gpus_changes_nothing():
    assert gpu_sets(["job.resources.gpu=1"], [0, 1]) == ["job.resources.gpu=1"]
    assert gpu_sets(["a=b"], None) == ["a=b"]
