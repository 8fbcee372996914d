from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from zlt.core.errors import SpecError
from zlt.flows.gate import admit
from zlt.spec import load_spec, load_spec_data
from zlt.spec.models import JobSpec
from zlt.spec.presets import CHARACTER, STYLE

BRIEF = Path(__file__).resolve().parents[3] / "shared" / "brief" / "mission.md"

V0 = {
    "model": {
        "base": {"name": "Tongyi-MAI/Z-Image-Turbo", "source": "huggingface", "precision": "fp16", "variant": "turbo"},
        "lora": {"enable": True, "rank": 16, "alpha": 16, "dropout": 0.0,
                 "target_modules": ["attention.to_q", "attention.to_k", "attention.to_v", "attention.to_out"]},
    },
    "dataset": {"type": "image_only_with_caption", "resolution": 1024, "center_crop": True,
                "caption": {"strategy": "filename_or_txt", "trigger_token": "<zstyle>"}, "repeats": 10,
                "shuffle": True, "augment": {"horizontal_flip": True, "color_jitter": False}},
    "training": {"backend": "lightning", "batch_size": 1, "gradient_accumulation": 4, "effective_batch_size": 4,
                 "max_steps": 2000, "warmup_steps": 100, "learning_rate": 1e-4, "scheduler": "cosine",
                 "optimizer": {"type": "adamw", "use_8bit": True}, "mixed_precision": "fp16",
                 "gradient_checkpointing": True},
    "job": {"type": "async", "timeout_hours": 6, "retry": {"max_retries": 1}, "resources": {"gpu": 1, "min_vram_gb": 24},
            "logging": {"level": "info"}},
    "output": {"format": "safetensors", "save": {"lora_weights": True, "config": True, "training_meta": True},
               "registry": {"type": "local", "path": "/artifacts/lora/"},
               "naming": {"pattern": "{job_id}_{style_name}_v0"}},
}


def test_v0_spec_exactly_as_written_is_accepted():
    loaded = load_spec_data(V0)
    s = loaded.spec
    assert s.model.lora.rank == 16 and s.training.effective_batch_size == 4
    assert s.output.registry.path == "/artifacts/lora/"
    assert s.dataset.caption.trigger_token == "<zstyle>"


@pytest.mark.skipif(not BRIEF.exists(), reason="brief not beside the checkout")
def test_v0_spec_from_the_mission_text_is_accepted():
    text = BRIEF.read_text().split("```yaml", 1)[1].split("```", 1)[0]
    assert load_spec_data(yaml.safe_load(text)).spec.training.max_steps == 2000


def test_style_preset_fills_the_v0_values():
    s = load_spec_data({}).spec
    assert (s.model.lora.rank, s.model.lora.alpha, s.training.learning_rate, s.training.max_steps) == (16, 16, 1e-4, 2000)
    assert (s.training.warmup_steps, s.training.scheduler, s.dataset.resolution) == (100, "cosine", 1024)
    assert s.training.optimizer.type == "adamw" and s.training.optimizer.use_8bit
    assert s.training.gradient_accumulation == 4 and s.trigger == "<zstyle>"


def test_character_preset_fills_the_guide_values():
    s = load_spec_data({"preset": "character"}).spec
    assert (s.model.lora.rank, s.training.learning_rate, s.training.max_steps) == (64, 2e-4, 4000)
    assert (s.output.save.every, s.output.save.keep) == (250, 7)
    assert s.training.optimizer.use_8bit and s.training.optimizer.weight_decay == 1e-4
    assert (s.training.timestep_type, s.dataset.resolution, s.trigger) == ("sigmoid", 512, None)


def test_user_value_wins_over_preset_and_provenance_says_so():
    loaded = load_spec_data({"preset": "character", "model": {"lora": {"rank": 32}}}, sets=["training.max_steps=3000"])
    assert loaded.spec.model.lora.rank == 32 and loaded.spec.training.max_steps == 3000
    prov = loaded.provenance
    assert prov["model.lora.rank"] == "spec"
    assert prov["training.max_steps"] == "--set"
    assert prov["training.learning_rate"] == "preset:character"
    assert prov["training.effective_batch_size"] == "derived"
    sources = {p: src for p, _, src in loaded.explain()}
    assert sources["job.priority"] == "default"


def test_all_errors_reported_at_once_with_paths_and_hints():
    bad = {"name": "Bad Name!", "model": {"lora": {"rank": 300, "alpha": 0, "alpah": 1}},
           "training": {"batch_size": 2, "gradient_accumulation": 2, "effective_batch_size": 5,
                        "warmup_steps": 10, "max_steps": 10, "learning_rate": 1.5},
           "dataset": {"resolution": 1000}}
    with pytest.raises(SpecError) as ei:
        load_spec_data(bad)
    paths = {e.path for e in ei.value.errors}
    assert {"name", "model.lora.rank", "model.lora.alpha", "model.lora.alpah", "training.effective_batch_size",
            "training.warmup_steps", "training.learning_rate", "dataset.resolution"} <= paths
    typo = next(e for e in ei.value.errors if e.path == "model.lora.alpah")
    assert "alpha" in typo.hint
    assert ei.value.exit_code == 2


@pytest.mark.parametrize("res,ok", [(256, True), (2048, True), (240, False), (2064, False), (1000, False)])
def test_resolution_bounds(res, ok):
    if ok:
        load_spec_data({"dataset": {"resolution": res}})
    else:
        with pytest.raises(SpecError):
            load_spec_data({"dataset": {"resolution": res}})


def test_tiny_model_allows_small_resolution_only_with_lightning():
    load_spec_data({"model": {"base": {"name": "zlt/tiny-zimage"}}, "dataset": {"resolution": 64}})
    with pytest.raises(SpecError) as ei:  # the backend registry's rule: the gate applies it
        admit({"model": {"base": {"name": "zlt/tiny-zimage"}}, "training": {"backend": "musubi"}}, mode="render")
    assert ei.value.errors[0].path == "training.backend"


def test_json_and_yaml_files_load_the_same(tmp_path):
    (tmp_path / "a.yaml").write_text(yaml.safe_dump(V0))
    (tmp_path / "a.json").write_text(json.dumps(V0))
    a, b = load_spec(tmp_path / "a.yaml"), load_spec(tmp_path / "a.json")
    assert a.spec == b.spec
    assert a.spec.dataset.path == str((tmp_path / "dataset").resolve())


def test_relative_dataset_path_resolves_against_the_spec_file(tmp_path):
    (tmp_path / "s.yaml").write_text("dataset:\n  path: imgs\n")
    assert load_spec(tmp_path / "s.yaml").spec.dataset.path == str(tmp_path / "imgs")
    assert load_spec(tmp_path / "s.yaml").spec.name == "imgs"


def test_yaml_syntax_error_names_the_line(tmp_path):
    (tmp_path / "s.yaml").write_text("model:\n  lora: [1,\n")
    with pytest.raises(SpecError) as ei:
        load_spec(tmp_path / "s.yaml")
    assert "line" in str(ei.value.errors[0])


def test_set_values_are_typed():
    loaded = load_spec_data({}, sets=["training.optimizer.use_8bit=false", "model.lora.target_modules=[attention.to_q]"])
    assert loaded.spec.training.optimizer.use_8bit is False
    assert loaded.spec.model.lora.target_modules == ["attention.to_q"]


def test_every_field_has_a_description():
    def walk(model):
        for name, f in model.model_fields.items():
            assert f.description, f"{model.__name__}.{name}"
            ann = f.annotation
            if isinstance(ann, type) and hasattr(ann, "model_fields"):
                walk(ann)
    walk(JobSpec)


def test_presets_only_name_real_fields():
    load_spec_data({"preset": "style"})
    load_spec_data({"preset": "character"})
    assert STYLE and CHARACTER


def test_duplicate_yaml_keys_are_refused_with_their_line(tmp_path):
    (tmp_path / "s.yaml").write_text("dataset:\n  path: a\nmodel: {}\ndataset:\n  resolution: 64\n")
    with pytest.raises(SpecError) as ei:
        load_spec(tmp_path / "s.yaml")
    text = str(ei.value.errors[0])
    assert "duplicate key 'dataset'" in text and "line 4" in text and "first at line 1" in text


def test_timestep_shift_defaults_to_zimages_own_and_is_validated():
    from zlt.core.errors import SpecError

    spec = load_spec_data({}).spec
    # Z-Image's scheduler shift: ai-toolkit z_image.py scheduler_config, musubi's Z-Image default_discrete_flow_shift
    assert spec.training.timestep_shift == 3.0
    assert load_spec_data({"training": {"timestep_shift": 1.5}}).spec.training.timestep_shift == 1.5
    with pytest.raises(SpecError) as ei:
        load_spec_data({"training": {"timestep_shift": 0}})
    assert [e.path for e in ei.value.errors] == ["training.timestep_shift"]


def test_gradient_checkpointing_unset_means_the_profile_decides():
    loaded = load_spec_data({"preset": "character"})
    assert loaded.spec.training.gradient_checkpointing is None
    assert load_spec_data({}).spec.training.gradient_checkpointing is True  # the user's v0 value, via the style preset
    mine = load_spec_data({"preset": "character", "training": {"gradient_checkpointing": False}})
    assert mine.spec.training.gradient_checkpointing is False and mine.provenance["training.gradient_checkpointing"] == "spec"


def test_sample_steps_and_guidance_follow_the_variant_unless_set():
    from zlt.render.common import sample_steps_guidance

    def sg(**base):
        return sample_steps_guidance(load_spec_data({"model": {"base": base}}).spec)

    assert sg(variant="turbo") == (9, 0.0) and sg(variant="base") == (30, 4.0) and sg(variant="deturbo") == (25, 2.0)
    spec = load_spec_data({"training": {"sample": {"steps": 12, "guidance_scale": 1.5}}}).spec
    assert sample_steps_guidance(spec) == (12, 1.5)
