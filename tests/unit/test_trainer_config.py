"""render_lightning (spec x profile -> trainer.json) and the trainer config model."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from zlt.backends.lightning import LIGHTNING
from zlt.backends.lightning.render import CONFIG_NAME, trainer_config_from_render
from zlt.core.errors import BadInputError, SpecError
from zlt.profiles import get_profile
from zlt.render.base import RenderContext
from zlt.spec.load import load_spec_data
from zlt.spec.models import TURBO_ADAPTER_V2
from zlt.trainer.config import (
    ADALN_TARGET,
    TrainerConfig,
    load_trainer_config,
    map_target_modules,
    peft_target,
)

TINY = {"name": "tinyq", "model": {"base": {"name": "zlt/tiny-zimage", "source": "builtin"}},
        "dataset": {"path": "/data/x", "resolution": 64}, "training": {"max_steps": 60, "warmup_steps": 5},
        "job": {"resources": {"gpu": 0, "min_vram_gb": None}}, "output": {"save": {"every": 20}}}


def spec(data: dict):
    return load_spec_data(data).spec


def test_cpu_render_contract(tmp_path: Path):
    ctx = RenderContext(dataset_dir=tmp_path / "prepared", output_dir=tmp_path / "out", config_dir=tmp_path / "render",
                        job_id="job1", cache_dir=tmp_path / "cache", python="/venv/bin/python", resume=True)
    r = LIGHTNING.render(spec(TINY), get_profile("cpu"), ctx)
    assert r.backend == "lightning" and r.profile == "cpu"
    assert list(r.files) == [CONFIG_NAME]
    assert r.argv == [["/venv/bin/python", "-m", "zlt.trainer", str(tmp_path / "render" / "trainer.json")]]
    assert r.step_names == ["train"]
    assert any("tiny random test model" in w for w in r.warnings)
    cfg = trainer_config_from_render(r)
    assert cfg.job_id == "job1" and cfg.name == "tinyq"
    assert cfg.data.path == str(tmp_path / "prepared")
    assert cfg.output.dir == str(tmp_path / "out") and cfg.output.resume is True
    assert cfg.cache.dir == str(tmp_path / "cache")
    assert (cfg.runtime.accelerator, cfg.training.precision, cfg.model.weight_dtype) == ("cpu", "32-true", "fp32")
    assert cfg.lora.target_modules == ["attention.to_q", "attention.to_k", "attention.to_v", "attention.to_out.0"]
    assert cfg.model.training_adapter is None  # never an adapter for the tiny model
    assert cfg.data.trigger == "<zstyle>"
    assert cfg.training.max_steps == 60 and cfg.output.save_every == 20


def test_defaults_without_context(zlt_home: Path):
    r = LIGHTNING.render(spec(TINY), get_profile("cpu"), RenderContext())
    cfg = trainer_config_from_render(r)
    assert r.argv == [["python", "-m", "zlt.trainer", "trainer.json"]]
    assert cfg.data.path == "/data/x"
    assert cfg.cache.dir == str(zlt_home / "cache")  # latents land in cache/latents/, captions in cache/text/
    assert cfg.output.dir == "output" and cfg.output.resume is False


def test_gpu_render_maps_precision_targets_and_adapter():
    s = spec({"preset": "style", "dataset": {"path": "/d"},
              "model": {"lora": {"target_modules": ["attention.to_out", "feed_forward", "adaLN_modulation"]}},
              "training": {"gradient_checkpointing": False, "optimizer": {"type": "adamw", "use_8bit": True}},
              "job": {"resources": {"gpu": 2}}})
    r = LIGHTNING.render(s, get_profile("24gb"), RenderContext())
    cfg = trainer_config_from_render(r)
    assert cfg.training.precision == "bf16-mixed"  # the style preset says fp16; the 24gb card has bf16
    assert cfg.model.weight_dtype == "bf16"
    assert any("fp16 mapped to bf16" in w for w in r.warnings)
    # a value the user set wins over the profile's lever (24gb: on), and is not a warning
    assert cfg.training.gradient_checkpointing is False
    assert not any("gradient_checkpointing" in w for w in r.warnings)
    assert "training.gradient_checkpointing: off (set in the spec)" in r.notes
    assert cfg.model.training_adapter == TURBO_ADAPTER_V2
    assert cfg.runtime.accelerator == "cuda" and cfg.runtime.devices == 2 and cfg.runtime.strategy == "ddp"
    assert cfg.lora.target_modules == ["attention.to_out.0", "feed_forward.w1", "feed_forward.w2", "feed_forward.w3", ADALN_TARGET]
    assert cfg.training.optimizer.use_8bit is True
    assert cfg.data.horizontal_flip is True and cfg.data.repeats == 10  # from the style preset


def test_a_real_size_base_stays_bf16_on_the_cpu():
    """bench/realsize.py: on the CPU an fp32 copy of the real model needs 24.6 GB for the transformer alone (and 16 GB
    for the text encoder), so a real base keeps its bf16 weights there; the tiny model still trains in fp32."""
    from zlt.trainer.runtime import resolve

    s = spec({"dataset": {"path": "/d", "resolution": 256}, "model": {"base": {"name": "/models/z", "source": "local"}},
              "job": {"resources": {"gpu": 0}}})
    cfg = trainer_config_from_render(LIGHTNING.render(s, get_profile("24gb"), RenderContext()))
    assert (cfg.runtime.accelerator, cfg.training.precision, cfg.model.weight_dtype) == ("cpu", "32-true", "bf16")
    warned: list[str] = []
    assert resolve(cfg, warned.append, cuda_available=False, bf16_supported=False).weight_dtype == "bf16"
    fp16 = cfg.model_copy(update={"model": cfg.model.model_copy(update={"weight_dtype": "fp16"})})
    assert resolve(fp16, warned.append, cuda_available=False, bf16_supported=False).weight_dtype == "bf16"
    tiny = trainer_config_from_render(LIGHTNING.render(spec(TINY), get_profile("cpu"), RenderContext()))
    tiny = tiny.model_copy(update={"model": tiny.model.model_copy(update={"weight_dtype": "bf16"})})
    assert resolve(tiny, warned.append, cuda_available=False, bf16_supported=False).weight_dtype == "fp32"


def test_unknown_target_is_a_field_error():
    s = spec({**TINY, "model": {**TINY["model"], "lora": {"target_modules": ["attention.to_q", "attn.qkv"]}}})
    with pytest.raises(SpecError) as e:
        LIGHTNING.render(s, get_profile("cpu"), RenderContext())
    assert e.value.errors[0].path == "model.lora.target_modules[1]"
    assert "attn.qkv" in e.value.errors[0].message


def test_sample_prompts_get_the_trigger():
    s = spec({**TINY, "training": {"max_steps": 60, "warmup_steps": 5, "sample": {"enable": True, "prompts": ["[trigger] a boat"], "every": 30}}})
    cfg = trainer_config_from_render(LIGHTNING.render(s, get_profile("cpu"), RenderContext()))
    assert cfg.sample.enable and cfg.sample.prompts == ["<zstyle> a boat"] and cfg.sample.every == 30
    assert (cfg.sample.width, cfg.sample.height) == (64, 64)


def test_map_target_modules_short_names_and_dedup():
    targets, unknown = map_target_modules(["to_q", "attention.to_q", "to_out", "w2", "nope"])
    assert targets == ["attention.to_q", "attention.to_out.0", "feed_forward.w2"]
    assert unknown == [(4, "nope")]


def test_peft_target_regex_hits_block_adaln_not_final_layer():
    assert peft_target(["attention.to_q"]) == ["attention.to_q"]
    rx = peft_target(["attention.to_q", "attention.to_out.0", ADALN_TARGET])
    assert isinstance(rx, str)
    hit = lambda name: re.fullmatch(rx, name) is not None  # noqa: E731 - peft matches str targets with fullmatch
    assert hit("layers.3.attention.to_q") and hit("noise_refiner.0.attention.to_out.0")
    assert hit("layers.12.adaLN_modulation.0") and hit("noise_refiner.1.adaLN_modulation.0")
    assert not hit("all_final_layer.2-1.adaLN_modulation.1") and not hit("all_final_layer.2-1.adaLN_modulation.0")
    assert not hit("layers.3.attention.to_k") and not hit("layers.3.attention.to_out")


def test_load_trainer_config_errors(tmp_path: Path):
    with pytest.raises(BadInputError, match="not found"):
        load_trainer_config(tmp_path / "missing.json")
    (tmp_path / "bad.json").write_text("{nope")
    with pytest.raises(BadInputError, match="not valid JSON"):
        load_trainer_config(tmp_path / "bad.json")
    r = LIGHTNING.render(spec(TINY), get_profile("cpu"), RenderContext())
    d = json.loads(r.files[CONFIG_NAME])
    d["training"]["lr"] = 1
    (tmp_path / "extra.json").write_text(json.dumps(d))
    with pytest.raises(BadInputError, match="training.lr"):
        load_trainer_config(tmp_path / "extra.json")
    (tmp_path / "ok.json").write_text(r.files[CONFIG_NAME])
    assert isinstance(load_trainer_config(tmp_path / "ok.json"), TrainerConfig)


def test_config_and_renderer_import_no_torch():
    code = "import sys, zlt.backends.lightning.render, zlt.trainer.config; print(any(m in sys.modules for m in ('torch', 'diffusers')))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "False"


def test_float8_and_compile_reach_the_trainer_config():
    base = {"preset": "style", "dataset": {"path": "/d"}}
    small = trainer_config_from_render(LIGHTNING.render(spec(base), get_profile("16gb"), RenderContext()))
    big = trainer_config_from_render(LIGHTNING.render(spec(base), get_profile("48gb"), RenderContext()))
    assert small.model.quantize == "float8" and big.model.quantize == "none"  # auto: float8 where bf16 won't fit
    asked = spec({**base, "model": {"base": {"quantize": "float8"}}, "training": {"compile": "off"}})
    cfg = trainer_config_from_render(LIGHTNING.render(asked, get_profile("48gb"), RenderContext()))
    assert cfg.model.quantize == "float8" and cfg.training.compile == "off"
    assert big.training.compile == "auto"  # the trainer turns auto on for CUDA
    tiny = trainer_config_from_render(LIGHTNING.render(spec(TINY), get_profile("cpu"), RenderContext()))
    assert tiny.model.quantize == "none"


def test_timestep_shift_is_read_from_the_config(tmp_path: Path):
    data = {"name": "x", "model": {"name": "zlt/tiny-zimage", "source": "builtin"}, "data": {"path": "/d"},
            "training": {"max_steps": 1, "timestep_shift": 2.0}, "cache": {"dir": "/c"}, "output": {"dir": "/o"}}
    assert TrainerConfig.model_validate(data).training.timestep_shift == 2.0
    del data["training"]["timestep_shift"]
    assert TrainerConfig.model_validate(data).training.timestep_shift == 3.0


def test_auto_float8_is_said_at_render_time():
    r = LIGHTNING.render(spec({"preset": "style", "dataset": {"path": "/d"}}), get_profile("16gb"), RenderContext())
    assert any(w.startswith("model.base.quantize auto: the built-in trainer stores the base in float8 "
                            "(profile 16gb: bf16 needs 16.5 of 16 GiB)") for w in r.warnings), r.warnings
