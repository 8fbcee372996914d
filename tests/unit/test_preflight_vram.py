"""The VRAM estimator: its parts, its levers, and the published figures in docs/vram.md."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from zlt.preflight.levers import levers_to_fit, suggest_levers
from zlt.preflight.vram import estimate, estimate_plan, lora_param_count, plan, smallest_fitting_profile
from zlt.profiles import EstimatorCoefficients, HardwareProfile, load_profiles
from zlt.spec import load_spec_data
from zlt.spec.models import JobSpec

ALL_LINEAR = ["attention.to_q", "attention.to_k", "attention.to_v", "attention.to_out", "feed_forward.w1",
              "feed_forward.w2", "feed_forward.w3", "adaLN_modulation"]


def make_spec(sets: dict[str, Any] | None = None, targets: list[str] | None = None, **top: Any) -> JobSpec:
    data: dict[str, Any] = {"dataset": {"path": "/nonexistent"}, **top}
    if targets:
        data["model"] = {"lora": {"target_modules": targets}}
    return load_spec_data(data, sets=[f"{k}={v}" for k, v in (sets or {}).items()]).spec


def profile(name: str, **sections: dict[str, Any]) -> HardwareProfile:
    p = load_profiles()[name]
    for section, values in sections.items():
        p = p.model_copy(update={section: getattr(p, section).model_copy(update=values)})
    return p


# ---- the model's parts -------------------------------------------------------------------------------------


def test_parts_add_up_to_the_total():
    for backend in ("ai-toolkit", "musubi", "lightning"):
        est = estimate(make_spec({"training.backend": backend}), load_profiles()["24gb"], backend)
        assert est.total_gb == pytest.approx(sum(est.parts.values()))
        assert est.total_gb == pytest.approx(max(est.phases.values()))


def test_tiny_model_needs_almost_nothing():
    spec = make_spec({"model.base.name": "zlt/tiny-zimage", "dataset.resolution": 64})
    assert estimate(spec, load_profiles()["cpu"], "lightning").total_gb < 0.5


def test_quantising_halves_the_transformer():
    p = load_profiles()["48gb"]
    bf16 = estimate(make_spec({"model.base.quantize": "none"}), p, "ai-toolkit").parts["transformer"]
    fp8 = estimate(make_spec({"model.base.quantize": "float8"}), p, "ai-toolkit").parts["transformer"]
    assert bf16 == pytest.approx(6.15e9 * 2 / 2**30)
    assert fp8 == pytest.approx(bf16 / 2 * 1.05)


def test_activations_grow_with_resolution_and_batch_and_without_checkpointing():
    p = load_profiles()["80gb"]
    act = {}
    for res, bs, gc in ((512, 1, True), (1024, 1, True), (1024, 2, True), (1024, 1, False)):
        spec = make_spec({"dataset.resolution": res, "training.batch_size": bs,
                          "training.gradient_checkpointing": str(gc).lower()})
        act[(res, bs, gc)] = estimate(spec, p, "ai-toolkit").parts["activations"]
    assert act[(512, 1, True)] < act[(1024, 1, True)]
    assert act[(1024, 2, True)] == pytest.approx(2 * act[(1024, 1, True)])
    assert act[(1024, 1, False)] > 8 * act[(1024, 1, True)]


def test_cached_text_encoder_is_not_resident():
    resident = estimate(make_spec(), profile("24gb", ai_toolkit={"cache_text_embeddings": False}), "ai-toolkit")
    cached = estimate(make_spec(), profile("24gb", ai_toolkit={"cache_text_embeddings": True}), "ai-toolkit")
    assert resident.parts["text_encoder"] > 3.5
    assert cached.parts["text_encoder"] == 0


def test_low_vram_lowers_the_ai_toolkit_loading_peak_only():
    spec = make_spec({"model.base.quantize": "float8"})
    on = estimate(spec, profile("24gb", ai_toolkit={"low_vram": True}), "ai-toolkit")
    off = estimate(spec, profile("24gb", ai_toolkit={"low_vram": False}), "ai-toolkit")
    assert on.phases["loading"] < off.phases["loading"]
    assert on.phases["training"] == pytest.approx(off.phases["training"])


def test_musubi_block_swap_moves_weights_to_the_host():
    spec = make_spec({"training.backend": "musubi"})
    none = estimate(spec, profile("24gb", musubi={"blocks_to_swap": 0}), "musubi")
    some = estimate(spec, profile("24gb", musubi={"blocks_to_swap": 16}), "musubi")
    assert some.parts["block_swap"] == pytest.approx(-none.parts["transformer"] * 15 / 30)
    assert some.total_gb < none.total_gb


def test_optimizer_states_8bit_vs_32bit():
    p = load_profiles()["80gb"]
    s8 = estimate(make_spec({"model.lora.rank": 128, "training.optimizer.use_8bit": "true"}), p, "lightning")
    s32 = estimate(make_spec({"model.lora.rank": 128, "training.optimizer.use_8bit": "false"}), p, "lightning")
    n = lora_param_count(make_spec({"model.lora.rank": 128}), "lightning")
    assert s32.parts["lora_train_state"] - s8.parts["lora_train_state"] == pytest.approx(n * 6 / 2**30)


def test_lora_param_count_matches_the_block_shapes():
    # rank 16, q/k/v/out (3840 -> 3840 each) on 30 blocks + 4 refiners
    assert lora_param_count(make_spec(), "ai-toolkit") == 16 * 4 * 7680 * 34
    assert lora_param_count(make_spec(), "musubi") == 16 * 4 * 7680 * 30
    # 'attention' alone reaches all four attention projections
    assert lora_param_count(make_spec(targets=["attention"]), "musubi") == 16 * 4 * 7680 * 30


def test_coefficients_come_from_the_profile():
    p = load_profiles()["24gb"]
    assert p.estimator == EstimatorCoefficients()  # the YAML blocks restate the documented defaults
    heavier = p.model_copy(update={"estimator": p.estimator.model_copy(update={"overhead_gb": 3.0})})
    assert estimate(make_spec(), heavier, "ai-toolkit").total_gb > estimate(make_spec(), p, "ai-toolkit").total_gb


# ---- published figures (docs/vram.md, "Published figures") --------------------------------------------------
#
# kind "allocated": a measured torch peak; the estimate's tensors (no overhead, no margin) within +-tol.
# kind "tier": the smallest card the source says works; total estimate in (lower, upper].
# kind "fits": a card the source says works; total estimate <= upper.
# kind "tight": the source says it "might" not fit; total estimate within +-tol of `value`.


@dataclasses.dataclass
class Figure:
    source: str
    kind: str
    backend: str
    profile: HardwareProfile
    sets: dict[str, Any]
    value: float = 0.0
    lower: float = 0.0
    upper: float = 0.0
    tol: float = 0.0
    targets: list[str] | None = None
    plan_changes: dict[str, Any] = dataclasses.field(default_factory=dict)


def _musubi_gui(tier: int, bs: int, fp8: bool) -> Figure:
    return Figure(f"musubi-tuner GUI preset {tier} GB", "fits", "musubi",
                  profile("80gb", musubi={"fp8_base": fp8, "fp8_scaled": fp8, "blocks_to_swap": 0}),
                  {"model.lora.rank": 4, "model.lora.alpha": 4, "dataset.resolution": 1024,
                   "training.batch_size": bs}, upper=tier, targets=ALL_LINEAR)


FIGURES = [
    Figure("SimpleTuner ZIMAGE.md / CONVROT.md: int8 rank-64 LoRA, 512 px, 1024 px validation, H100 9.70 GiB",
           "allocated", "ai-toolkit", profile("24gb", ai_toolkit={"cache_text_embeddings": True, "low_vram": True}),
           {"model.lora.rank": 64, "model.lora.alpha": 64, "dataset.resolution": 512,
            "model.base.quantize": "float8", "training.sample.enable": "true"},
           value=9.70, tol=0.15, plan_changes={"sample_resolution": 1024}),
    Figure("SimpleTuner, same recipe on L40S: 9.66 GiB", "allocated", "ai-toolkit",
           profile("24gb", ai_toolkit={"cache_text_embeddings": True, "low_vram": True}),
           {"model.lora.rank": 64, "model.lora.alpha": 64, "dataset.resolution": 512,
            "model.base.quantize": "float8", "training.sample.enable": "true"},
           value=9.66, tol=0.15, plan_changes={"sample_resolution": 1024}),
    Figure("ai-toolkit #550: 12 GB card trains at <= 768 px", "fits", "ai-toolkit",
           profile("12gb").model_copy(update={"resolution_cap": 1024}),
           {"model.lora.rank": 32, "model.lora.alpha": 32, "dataset.resolution": 768}, upper=12, targets=ALL_LINEAR),
    Figure("ai-toolkit #550: 1024 px might not fit 12 GB", "tight", "ai-toolkit",
           profile("12gb").model_copy(update={"resolution_cap": 1024}),
           {"model.lora.rank": 32, "model.lora.alpha": 32, "dataset.resolution": 1024}, value=12, tol=1.5,
           targets=ALL_LINEAR),
    Figure("character guide: ai-toolkit rank 64 at 512 px needs 24 GB", "tier", "ai-toolkit",
           profile("48gb"), {"model.lora.rank": 64, "model.lora.alpha": 64, "dataset.resolution": 512,
                             "model.base.quantize": "none"}, lower=16, upper=24, targets=ALL_LINEAR),
    Figure("character guide: 16 GB with float8 + low_vram", "tier", "ai-toolkit",
           profile("24gb", ai_toolkit={"low_vram": True}),
           {"model.lora.rank": 64, "model.lora.alpha": 64, "dataset.resolution": 512,
            "model.base.quantize": "float8"}, lower=12, upper=16, targets=ALL_LINEAR),
    _musubi_gui(12, 1, True),
    _musubi_gui(16, 2, True),
    _musubi_gui(24, 1, False),
    _musubi_gui(32, 2, False),
    _musubi_gui(48, 8, False),
]


@pytest.mark.parametrize("fig", FIGURES, ids=lambda f: f.source[:60])
def test_published_figure(fig: Figure):
    spec = make_spec({"training.backend": fig.backend, **fig.sets}, targets=fig.targets)
    p = plan(spec, fig.profile, fig.backend)
    if fig.plan_changes:
        p = dataclasses.replace(p, **fig.plan_changes)
    est = estimate_plan(p, fig.profile.estimator)
    if fig.kind == "allocated":
        assert est.allocated_gb == pytest.approx(fig.value, rel=fig.tol), est.to_dict()
    elif fig.kind == "tier":
        assert fig.lower < est.total_gb <= fig.upper, est.to_dict()
    elif fig.kind == "fits":
        assert est.total_gb <= fig.upper, est.to_dict()
    else:
        assert est.total_gb == pytest.approx(fig.value, abs=fig.tol), est.to_dict()


# ---- levers and profiles ------------------------------------------------------------------------------------


def test_levers_come_in_the_documented_order_with_exact_changes():
    spec = make_spec({"model.lora.rank": 64, "model.lora.alpha": 64, "model.base.quantize": "none"})
    p = profile("24gb", ai_toolkit={"quantize": False, "quantize_te": False})
    levers = suggest_levers(spec, p, "ai-toolkit", 12.0)
    names = [lv.name for lv in levers]
    order = ["quantize", "resolution", "cache_text_embeddings", "low_vram", "rank"]
    assert names == [n for n in order if n in names]
    assert names[:3] == ["quantize", "resolution", "cache_text_embeddings"]
    assert levers[0].change == "--set model.base.quantize=float8"
    assert levers[0].set_args == ["model.base.quantize=float8"]
    cache = levers[names.index("cache_text_embeddings")]
    assert cache.change.startswith("--profile 16gb")  # the bundled profile that caches embeddings
    # each lever's estimate is what applying it gives
    quantised = make_spec({"model.lora.rank": 64, "model.lora.alpha": 64, "model.base.quantize": "float8"})
    assert levers[0].estimate_gb == pytest.approx(estimate(quantised, p, "ai-toolkit").total_gb)
    # cumulative estimates only go down, and the prefix that fits really fits
    cums = [lv.cumulative_gb for lv in levers]
    assert cums == sorted(cums, reverse=True)
    fit = levers_to_fit(levers)
    assert fit and fit[-1].cumulative_gb <= 12.0 and all(not lv.fits_cumulative for lv in fit[:-1])


def test_gradient_checkpointing_off_is_the_first_lever():
    spec = make_spec({"training.gradient_checkpointing": "false"})
    levers = suggest_levers(spec, load_profiles()["80gb"], "lightning", 20.0)
    assert levers[0].name == "gradient_checkpointing"
    assert levers[0].change == "--set training.gradient_checkpointing=true"


def test_batch_lever_keeps_the_effective_batch():
    spec = make_spec({"training.batch_size": 4, "training.gradient_accumulation": 2})
    lever = next(lv for lv in suggest_levers(spec, load_profiles()["80gb"], "lightning", 10.0)
                 if lv.name == "batch_size")
    assert lever.set_args == ["training.batch_size=1", "training.gradient_accumulation=8",
                              "training.effective_batch_size=8"]


def test_a_resolution_above_the_cap_gets_a_resolution_lever_even_when_memory_fits():
    spec = make_spec({"dataset.resolution": 1024})
    levers = suggest_levers(spec, load_profiles()["12gb"], "ai-toolkit")
    assert levers[0].change == "--set dataset.resolution=768" and levers[0].fits


def test_smallest_fitting_profile():
    assert smallest_fitting_profile(make_spec({"training.backend": "ai-toolkit"}), "ai-toolkit").name == "16gb"
    assert smallest_fitting_profile(make_spec({"dataset.resolution": 768}), "ai-toolkit").name == "12gb"
    # quantize auto: 16 GB cannot hold bf16 weights at 1024 px, so the built-in trainer stores them in float8 there
    assert smallest_fitting_profile(make_spec({"training.backend": "lightning"}), "lightning").name == "16gb"
    unquantised = make_spec({"training.backend": "lightning", "model.base.quantize": "none"})
    assert smallest_fitting_profile(unquantised, "lightning").name == "24gb"
    tiny = make_spec({"model.base.name": "zlt/tiny-zimage", "dataset.resolution": 64})
    assert smallest_fitting_profile(tiny, "lightning").name == "cpu"
    huge = make_spec({"dataset.resolution": 2048, "training.gradient_checkpointing": "false"})
    assert smallest_fitting_profile(huge, "lightning") is None


# ---- the built-in trainer: float8 storage and gradient checkpointing from the profile (issue 14) -------------


def preset_spec(preset: str, sets: dict[str, Any]) -> JobSpec:
    return load_spec_data({"preset": preset, "dataset": {"path": "/nonexistent"}},
                          sets=[f"{k}={v}" for k, v in sets.items()]).spec


@pytest.mark.parametrize(("preset", "res", "card"), [("style", 1024, "16gb"), ("character", 512, "12gb"),
                                                      ("character", 768, "12gb")])
def test_float8_fits_the_small_cards(preset: str, res: int, card: str):
    p = load_profiles()[card]
    f8 = estimate(preset_spec(preset, {"dataset.resolution": res, "model.base.quantize": "float8"}), p, "lightning")
    bf16 = estimate(preset_spec(preset, {"dataset.resolution": res, "model.base.quantize": "none"}), p, "lightning")
    assert f8.total_gb <= p.vram_gb < bf16.total_gb, (f8.to_dict(), bf16.to_dict())
    assert f8.parts["transformer"] == pytest.approx(6.15e9 * 1.05 / 2**30)
    auto = estimate(preset_spec(preset, {"dataset.resolution": res}), p, "lightning")
    assert auto.total_gb == pytest.approx(f8.total_gb)  # 'auto' picks float8 where bf16 does not fit


def test_float8_without_checkpointing_keeps_the_bf16_copies():
    p = load_profiles()["80gb"]
    on = estimate(make_spec({"model.base.quantize": "float8", "training.gradient_checkpointing": "true"}), p, "lightning")
    off = estimate(make_spec({"model.base.quantize": "float8", "training.gradient_checkpointing": "false"}), p,
                   "lightning")
    assert on.parts["float8_upcast"] == pytest.approx(6.15e9 * 2 / 2**30 / 30)  # one block at a time
    assert off.parts["float8_upcast"] == pytest.approx(6.15e9 * 2 / 2**30)  # every layer until backward


def test_auto_quantize_keeps_bf16_where_it_fits():
    assert plan(make_spec(), load_profiles()["48gb"], "lightning").transformer_bytes == 2.0
    assert plan(make_spec(), load_profiles()["16gb"], "lightning").transformer_bytes == pytest.approx(1.05)


def _unset_gc(spec: JobSpec) -> JobSpec:
    """The spec as it reads when the user did not write training.gradient_checkpointing (None)."""
    return spec.model_copy(update={"training": spec.training.model_copy(update={"gradient_checkpointing": None})})


def test_gradient_checkpointing_comes_from_the_profile_unless_set():
    from zlt.backends import get as get_backend

    p80, p24, cpu = (load_profiles()[n] for n in ("80gb", "24gb", "cpu"))
    unset, on, off = _unset_gc(make_spec()), make_spec({"training.gradient_checkpointing": True}), \
        make_spec({"training.gradient_checkpointing": False})
    assert get_backend("lightning").gradient_checkpointing(unset, p80)[0] is False
    assert get_backend("lightning").gradient_checkpointing(unset, p24)[0] is True
    assert get_backend("lightning").gradient_checkpointing(unset, cpu)[0] is False
    assert get_backend("lightning").gradient_checkpointing(on, p80) == (True, "set in the spec")  # the user's value wins
    assert get_backend("lightning").gradient_checkpointing(off, p24) == (False, "set in the spec")
    unset = _unset_gc(make_spec())
    on80 = plan(unset, p80, "lightning")
    assert not on80.gradient_checkpointing and on80.gradient_checkpointing_source == "profile 80gb (lightning lever)"
    assert "gradient checkpointing off (profile 80gb (lightning lever))" in on80.notes
    explicit = plan(make_spec({"training.gradient_checkpointing": "true"}), p80, "lightning")
    assert explicit.gradient_checkpointing and explicit.gradient_checkpointing_source == "set in the spec"
    assert plan(unset, p24, "lightning").gradient_checkpointing


def test_quantize_is_a_lever_for_the_built_in_trainer():
    spec = make_spec({"model.base.quantize": "none"})
    levers = suggest_levers(spec, load_profiles()["16gb"], "lightning")
    assert levers[0].name == "quantize" and levers[0].fits


def test_notes_say_attention_and_ddp():
    spec = make_spec({"job.resources.gpu": 2, "training.gradient_accumulation": 4})
    notes = plan(spec, load_profiles()["48gb"], "lightning").notes
    assert any(n.startswith("attention ") for n in notes)
    assert "effective batch 8 = batch 1 x accumulation 4 x 2 GPUs" in " ".join(notes)
