from __future__ import annotations

import json

import pytest
import tomllib
import yaml

from tests.golden.cases import CTX, cases, golden_path, render_case
from zlt.backends import render_spec
from zlt.core.errors import BadInputError
from zlt.core.quoting import toml_value, yaml_value
from zlt.preflight.select import select_profile
from zlt.profiles import get_profile, load_profiles
from zlt.spec import load_spec_data

CASES = list(cases())


@pytest.mark.parametrize("backend,preset,profile", CASES, ids=[f"{b}-{p}-{pr.name}" for b, p, pr in CASES])
def test_golden(backend, preset, profile):
    expected = json.loads(golden_path(backend, preset, profile.name).read_text())
    got = json.loads(json.dumps(render_case(backend, preset, profile)))
    assert got == expected


HOSTILE = [
    "a: b", "x # not a comment", "it's \"quoted\"", "{{ jinja }}", "line1\nline2: x", "- dash", "[list]",
    "null", "yes", "1e-4", "tab\there", "back\\slash", "emoji 😀", "", "  spaces  ", "%percent", "&anchor", "*alias",
]


@pytest.mark.parametrize("value", HOSTILE)
def test_quoting_round_trips(value):
    assert yaml.safe_load(f"k: {yaml_value(value)}\n") == {"k": value}
    assert tomllib.loads(f"k = {toml_value(value)}\n") == {"k": value}
    assert yaml.safe_load(f"k: {yaml_value([value, 1, None])}\n") == {"k": [value, 1, None]}


@pytest.mark.parametrize("backend", ["ai-toolkit", "musubi"])
def test_hostile_values_do_not_change_structure(backend):
    evil = "x: y\n# z {{ w }} \"q\" 'r' [s]"
    spec = load_spec_data({
        "name": "evil",
        "dataset": {"path": "/d/" + evil, "caption": {"trigger_token": evil, "default_caption": evil}},
        "training": {"sample": {"prompts": [evil]}},
    }).spec
    res = render_spec(spec, backend, get_profile("24gb"), CTX.__class__(dataset_dir=None))
    for name, text in res.files.items():
        if name.endswith(".yaml"):
            doc = yaml.safe_load(text)
            proc = doc["config"]["process"][0]
            assert proc["trigger_word"] == evil
            assert proc["datasets"][0]["folder_path"] == "/d/" + evil
            assert proc["datasets"][0]["default_caption"] == evil
            assert set(doc) == {"job", "config", "meta"}
        else:
            doc = tomllib.loads(text)
            assert doc["datasets"][0]["image_directory"] == "/d/" + evil
            assert set(doc) == {"general", "datasets"}


def test_spec_that_cannot_fit_is_refused_with_alternative():
    spec = load_spec_data({"model": {"lora": {"rank": 64}, "base": {"quantize": "none"}}}).spec
    with pytest.raises(BadInputError) as ei:
        select_profile(spec, "ai-toolkit", "16gb")
    assert "16gb" in ei.value.message and "GiB" in ei.value.message
    assert "--profile" in ei.value.hint or "--set" in ei.value.hint


def test_auto_profile_picks_largest_that_fits_the_card():
    spec = load_spec_data({}).spec
    assert select_profile(spec, "ai-toolkit", "auto", 24)[0].name == "24gb"
    assert select_profile(spec, "ai-toolkit", "auto", 40)[0].name == "32gb"
    assert select_profile(spec, "ai-toolkit", "auto", 80)[0].name == "80gb"
    with pytest.raises(BadInputError):
        select_profile(spec, "ai-toolkit", "auto", 6)


def test_unknown_profile_lists_the_real_ones():
    with pytest.raises(BadInputError) as ei:
        select_profile(load_spec_data({}).spec, "ai-toolkit", "7gb")
    assert "24gb" in ei.value.hint


def test_profiles_cover_the_promised_sizes_and_are_monotonic():
    profiles = load_profiles()
    assert {"16gb", "24gb", "32gb", "48gb", "80gb"} <= set(profiles)
    gpu = [p for p in profiles.values() if not p.is_cpu]
    assert [p.vram_gb for p in gpu] == sorted(p.vram_gb for p in gpu)
    for p in gpu:
        assert p.expected_vram_gb <= p.vram_gb


def test_aitoolkit_render_maps_spec_and_levers():
    spec = load_spec_data({"preset": "character", "training": {"backend": "ai-toolkit"}}).spec
    res = render_spec(spec, None, get_profile("16gb"), CTX)
    proc = yaml.safe_load(res.files["ai_toolkit.yaml"])["config"]["process"][0]
    assert proc["network"] == {"type": "lora", "linear": 64, "linear_alpha": 64, "dropout": 0.0,
                               "transformer_only": False,
                               "network_kwargs": {"only_if_contains": spec.model.lora.target_modules,
                                                  "ignore_if_contains": ["all_final_layer"]}}
    assert proc["model"]["arch"] == "zimage" and proc["model"]["quantize"] is True and proc["model"]["low_vram"] is True
    assert proc["model"]["assistant_lora_path"].endswith("zimage_turbo_training_adapter_v2.safetensors")
    assert proc["train"]["optimizer"] == "adamw8bit" and proc["train"]["timestep_type"] == "sigmoid"
    assert proc["save"] == {"dtype": "bf16", "save_every": 250, "max_step_saves_to_keep": 7}
    assert proc["train"]["disable_sampling"] is True
    assert res.argv == [["env", "SEED=42", "python", "run.py", "/jobs/j1/render/ai_toolkit.yaml",
                         "-l", "/jobs/j1/trainer.log"]]
    assert res.cwd == "/opt/trainer"


def test_musubi_render_has_three_steps_and_resume():
    spec = load_spec_data({"training": {"backend": "musubi"}}).spec
    ctx = CTX.__class__(**{**CTX.__dict__, "resume_from": CTX.output_dir / "zstyle-step00000500-state", "resume_step": 500})
    res = render_spec(spec, None, get_profile("16gb"), ctx)
    assert res.step_names == ["convert_adapter", "cache_latents", "cache_text_encoder_outputs", "train"]
    train = res.argv[3]
    assert train[train.index("--max_train_steps") + 1] == "1500"
    assert train[train.index("--resume") + 1].endswith("-state")
    assert "--fp8_base" in train and "--fp8_scaled" in train
    assert train[train.index("--network_module") + 1] == "networks.lora_zimage"
    doc = tomllib.loads(res.files["musubi_dataset.toml"])
    assert doc["general"]["resolution"] == [1024, 1024] and doc["datasets"][0]["num_repeats"] == 10


def test_write_render_records_what_will_be_trained(tmp_path):
    from zlt.render import write_render

    spec = load_spec_data({"model": {"lora": {"rank": 4, "alpha": 2}}}).spec
    res = render_spec(spec, "ai-toolkit", get_profile("24gb"), CTX)
    written = write_render(res, tmp_path)
    doc = json.loads((tmp_path / "render.json").read_text())
    assert tmp_path / "render.json" in written
    # ai-toolkit trains Z-Image LoRAs with alpha = rank (toolkit/lora_special.py): the artifact must say 4, not 2
    assert doc["trained"]["lora_alpha"] == 4 and doc["backend"] == "ai-toolkit"
    assert any(w.startswith("model.lora.alpha") for w in doc["warnings"])


def test_lightning_explain_says_which_speed_switches_apply():
    from zlt.backends.lightning import LIGHTNING

    spec = load_spec_data({"dataset": {"path": "/tmp"}, "job": {"resources": {"gpu": 2}},
                           "model": {"base": {"quantize": "none"}}}).spec
    res = LIGHTNING.render(spec, get_profile("80gb"), CTX)
    notes = "\n".join(res.notes)
    assert "torch.compile of the repeated blocks on (training.compile auto, cuda)" in notes
    assert "model.base.quantize: base weights stored in their dtype (spec)" in notes
    assert "job.resources.gpu: DDP on 2 GPUs, one process each" in notes
    assert "effective batch 8 = batch 1 x accumulation 4 x 2 GPUs" in notes
    spec8 = load_spec_data({"dataset": {"path": "/tmp"}, "model": {"base": {"quantize": "float8"}}}).spec
    notes8 = "\n".join(LIGHTNING.render(spec8, get_profile("16gb"), CTX).notes)
    assert "model.base.quantize: float8 storage (spec): transformer and text encoder weights in float8" in notes8
    assert "off (float8 storage cannot be compiled)" in notes8
