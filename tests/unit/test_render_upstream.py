"""Upstream facts the renders rely on, checked against small fixtures that reproduce the upstream trainers' own
pure logic (read at the commits vendor/*.toml pins; the code is not copied, its behaviour is restated):

- kohya-ss/musubi-tuner 30c658c: src/musubi_tuner/networks/lora.py, networks/lora_zimage.py,
  training/trainer_base.py (get_optimizer, get_lr_scheduler, _run_training_loop), utils/train_utils.py.
- ostris/ai-toolkit 27a03a9: toolkit/lora_special.py, toolkit/scheduler.py, toolkit/optimizer.py,
  extensions_built_in/diffusion_models/z_image/z_image.py, jobs/process/BaseSDTrainProcess.py.
"""

from __future__ import annotations

import ast
import importlib
import re
from pathlib import Path

import pytest
import yaml

from tests.golden.cases import CTX
from zlt.backends import render_spec
from zlt.backends.musubi.adapter import check_adapter_keys, convert_adapter
from zlt.profiles import get_profile
from zlt.spec import load_spec_data

BLOCK_CHILDREN = ["attention.to_q", "attention.to_k", "attention.to_v", "attention.to_out.0",
                  "feed_forward.w1", "feed_forward.w2", "feed_forward.w3", "adaLN_modulation.0"]


def zimage_linears(n_layers: int = 2, n_refiners: int = 1) -> list[str]:
    """Linear module paths of diffusers' ZImageTransformer2DModel (context refiners have no adaLN)."""
    out = []
    for block, n in (("layers", n_layers), ("noise_refiner", n_refiners), ("context_refiner", n_refiners)):
        for i in range(n):
            out += [f"{block}.{i}.{c}" for c in BLOCK_CHILDREN if not (block == "context_refiner" and "adaLN" in c)]
    return out + ["all_final_layer.2-1.adaLN_modulation.1", "all_final_layer.2-1.linear", "t_embedder.mlp.0",
                  "t_embedder.mlp.2", "cap_embedder.1", "all_x_embedder.2-1"]


def test_module_list_is_diffusers_zimage_transformer():
    """The Linear layers of diffusers' ZImageTransformer2DModel (transformer_z_image.py), at the tiny size."""
    import torch
    from diffusers import ZImageTransformer2DModel

    from zlt.trainer.tiny import TRANSFORMER_CONFIG

    tr = ZImageTransformer2DModel(**TRANSFORMER_CONFIG)
    names = {n for n, m in tr.named_modules() if isinstance(m, torch.nn.Linear)}
    assert names == set(zimage_linears(TRANSFORMER_CONFIG["n_layers"], TRANSFORMER_CONFIG["n_refiner_layers"]))
    blocks = {type(m).__name__ for n, m in tr.named_modules() if re.fullmatch(r"(layers|noise_refiner|context_refiner)\.\d+", n)}
    assert blocks == {"ZImageTransformerBlock"}  # musubi's lora_zimage.py ZIMAGE_TARGET_REPLACE_MODULES


def spec_for(backend: str, **training):
    return load_spec_data({"training": {"backend": backend, **training}, "output": {"save": {"every": 10}}}).spec


def musubi_train(spec, ctx=CTX):
    res = render_spec(spec, "musubi", get_profile("24gb"), ctx)
    return res, res.argv[-1]


def argv_values(argv: list[str], flag: str) -> list[str]:
    i = argv.index(flag) + 1
    out = []
    while i < len(argv) and not argv[i].startswith("--"):
        out.append(argv[i])
        i += 1
    return out


# -- musubi: module selection -------------------------------------------------------------------------------------
def musubi_trained(network_args: list[str], modules: list[str]) -> set[str]:
    """networks/lora_zimage.py create_arch_network appends `.*(_modulation|_refiner).*` to exclude_patterns;
    networks/lora.py skips a module when an exclude pattern fullmatches it and no include pattern does."""
    kwargs = dict(a.split("=") for a in network_args)  # trainer_base.py: key, value = net_arg.split("=")
    exclude = ast.literal_eval(kwargs.get("exclude_patterns", "[]")) + [r".*(_modulation|_refiner).*"]
    include = ast.literal_eval(kwargs.get("include_patterns", "[]"))
    blocks = [m for m in modules if re.match(r"(layers|noise_refiner|context_refiner)\.\d+\.", m)]  # ZImageTransformerBlock
    return {m for m in blocks
            if not (any(re.fullmatch(p, m) for p in exclude) and not any(re.fullmatch(p, m) for p in include))}


def peft_trained(targets, modules: list[str]) -> set[str]:
    """peft: a list matches a module whose name is the target or ends with '.' + target; a str must fullmatch."""
    if isinstance(targets, str):
        return {m for m in modules if re.fullmatch(targets, m)}
    return {m for m in modules if any(m == t or m.endswith("." + t) for t in targets)}


def aitoolkit_trained(network: dict, modules: list[str]) -> set[str]:
    """lora_special.py: clean names are 'transformer.<module>'; ignore_if_contains skips, transformer_only keeps
    only names containing z_image.py's block name 'layers', only_if_contains keeps names containing a word."""
    kw = network.get("network_kwargs", {})
    out = set()
    for m in modules:
        clean = f"transformer.{m}"
        if any(w in clean for w in kw.get("ignore_if_contains", [])):
            continue
        if network.get("transformer_only", True) and "layers" not in clean:
            continue
        only = kw.get("only_if_contains")
        if only is not None and not any(w in clean for w in only):
            continue
        out.add(m)
    return out


@pytest.mark.parametrize("targets", [
    ["attention.to_q", "attention.to_k", "attention.to_v", "attention.to_out"],
    ["attention.to_q", "feed_forward.w1"],
    ["attention", "feed_forward", "adaLN_modulation"],
])
def test_every_backend_trains_the_spec_module_set(targets):
    from zlt.backends.lightning.render import trainer_config_from_render
    from zlt.trainer.config import peft_target

    modules = zimage_linears()
    spec = load_spec_data({"model": {"lora": {"target_modules": targets}}}).spec
    lightning = trainer_config_from_render(render_spec(spec, "lightning", get_profile("24gb"), CTX))
    expected = peft_trained(peft_target(lightning.lora.target_modules), modules)
    _, train = musubi_train(spec)
    assert musubi_trained(argv_values(train, "--network_args"), modules) == expected
    res = render_spec(spec, "ai-toolkit", get_profile("24gb"), CTX)
    network = yaml.safe_load(res.files["ai_toolkit.yaml"])["config"]["process"][0]["network"]
    assert aitoolkit_trained(network, modules) == expected
    assert "all_final_layer.2-1.adaLN_modulation.1" not in expected


def test_musubi_without_network_args_would_train_attention_and_feed_forward():
    # the bug this render fixes: no --network_args trains the feed-forward too (the spec says attention only)
    trained = musubi_trained([], zimage_linears())
    assert "layers.0.feed_forward.w1" in trained and "noise_refiner.0.attention.to_q" not in trained


# -- musubi: the turbo adapter --------------------------------------------------------------------------------------
def musubi_lora_name(module: str) -> str:
    """networks/lora.py: lora_name = f"{prefix}.{original_name}".replace(".", "_") with prefix 'lora_unet'."""
    return f"lora_unet.{module}".replace(".", "_")


def test_adapter_reaches_musubi_in_its_own_keys(tmp_path):
    from tests.integration.test_train_helpers import write_tiny_adapter
    from zlt.lora.convert import effective_deltas, read_lora
    from zlt.lora.safetensors_io import read_header

    src = write_tiny_adapter(tmp_path / "adapter.safetensors")
    out = tmp_path / "job" / "turbo_adapter_musubi.safetensors"
    cached, made = convert_adapter(src, tmp_path / "cache", out)
    assert made and cached.parent == tmp_path / "cache"
    keys = set(read_header(out).tensors)
    modules = [f"layers.{i}.{m}" for i in range(2) for m in ("attention.to_q", "attention.to_k", "feed_forward.w1")]
    # create_network_from_weights reads modules_dim from `<lora_name>.lora_down.weight` and alpha from `.alpha`
    assert keys == {f"{musubi_lora_name(m)}.{k}" for m in modules for k in ("lora_down.weight", "lora_up.weight", "alpha")}
    a, b = effective_deltas(read_lora(src)[0]), effective_deltas(read_lora(out)[0])
    assert all(abs(a[m] - b[m]).max() < 1e-6 for m in a)
    again = convert_adapter(src, tmp_path / "cache", tmp_path / "job2" / "x.safetensors")
    assert again == (cached, False)  # cached by the source's content hash


def test_adapter_whose_keys_map_nowhere_is_refused_before_training():
    from zlt.core.errors import BadInputError

    assert check_adapter_keys(["diffusion_model.layers.0.attention.to_q.lora_A.weight",
                               "diffusion_model.layers.0.attention.to_q.lora_B.weight"], "a") == 1
    with pytest.raises(BadInputError, match="not Z-Image transformer modules"):
        check_adapter_keys(["diffusion_model.double_blocks.0.img_attn.qkv.lora_A.weight",
                            "diffusion_model.double_blocks.0.img_attn.qkv.lora_B.weight"], "flux.safetensors")


def test_render_checks_a_local_adapter_and_adds_the_conversion_step(tmp_path):
    from tests.integration.test_train_helpers import write_tiny_adapter

    src = write_tiny_adapter(tmp_path / "a.safetensors")
    spec = load_spec_data({"model": {"base": {"training_adapter": str(src)}}}).spec
    res, train = musubi_train(spec)
    assert res.step_names[0] == "convert_adapter" and res.argv[0][:3] == ["python3", "-m", "zlt.backends.musubi.adapter"]
    assert argv_values(train, "--base_weights") == ["/jobs/j1/render/turbo_adapter_musubi.safetensors"]
    none = load_spec_data({"model": {"base": {"training_adapter": "none"}}}).spec
    res, train = musubi_train(none)
    assert "convert_adapter" not in res.step_names and "--base_weights" not in train


# -- musubi: optimizer and schedule -----------------------------------------------------------------------------------
def musubi_optimizer_kwargs(args: list[str]) -> dict:
    """trainer_base.get_optimizer: key, value = arg.split('='); value = ast.literal_eval(value); Adafactor gets
    relative_step=True unless given, and relative_step rewrites the scheduler to 'adafactor:<lr>'."""
    kw = {}
    for a in args:
        k, v = a.split("=")
        kw[k] = ast.literal_eval(v)
    return kw


def test_musubi_adafactor_keeps_the_spec_lr_and_schedule():
    spec = spec_for("musubi", optimizer={"type": "adafactor"}, warmup_steps=100, scheduler="cosine")
    _, train = musubi_train(spec)
    kw = musubi_optimizer_kwargs(argv_values(train, "--optimizer_args"))
    assert kw.get("relative_step", True) is False and kw["scale_parameter"] is False and kw["warmup_init"] is False
    assert argv_values(train, "--learning_rate") == ["0.0001"]


def test_prodigy_means_the_same_step_size_on_every_backend():
    from zlt.backends.lightning.render import trainer_config_from_render

    spec = load_spec_data({"training": {"optimizer": {"type": "prodigy"}, "learning_rate": 1e-4}}).spec
    # toolkit/optimizer.py: use_lr = 1.0 when learning_rate < 0.1, and eps=1e-6
    ait = yaml.safe_load(render_spec(spec, "ai-toolkit", get_profile("24gb"), CTX).files["ai_toolkit.yaml"])
    train_ait = ait["config"]["process"][0]["train"]
    upstream_lr = 1.0 if train_ait["lr"] < 0.1 else train_ait["lr"]
    assert train_ait["optimizer"] == "prodigy" and upstream_lr == 1.0
    _, train = musubi_train(spec)
    assert float(argv_values(train, "--learning_rate")[0]) == upstream_lr
    kw = musubi_optimizer_kwargs(argv_values(train, "--optimizer_args"))
    assert kw["eps"] == 1e-6 and kw["use_bias_correction"] is True
    assert train_ait["optimizer_params"]["use_bias_correction"] is True
    cfg = trainer_config_from_render(render_spec(spec, "lightning", get_profile("24gb"), CTX))
    assert cfg.training.learning_rate == upstream_lr and cfg.training.optimizer.eps == 1e-6


def musubi_scheduler(train: list[str], optimizer):
    """get_lr_scheduler: with --lr_scheduler_type, the scheduler is that callable on --lr_scheduler_args alone."""
    path = argv_values(train, "--lr_scheduler_type")[0]
    module, name = path.rsplit(".", 1)
    kwargs = {k: ast.literal_eval(v) for k, v in (a.split("=") for a in argv_values(train, "--lr_scheduler_args"))}
    return getattr(importlib.import_module(module), name)(optimizer, **kwargs)


@pytest.mark.parametrize("scheduler", ["cosine", "linear", "constant"])
def test_musubi_retry_continues_the_uninterrupted_lr_curve(scheduler):
    """_run_training_loop restarts global_step at 0 while accelerator.load_state restores the scheduler's
    last_epoch; zlt trains the remaining steps. The LR at every step must be the uninterrupted run's."""
    import torch

    n, s = 40, 25
    spec = spec_for("musubi", max_steps=n, warmup_steps=5, scheduler=scheduler)

    def run(train, steps, state=None):
        p = torch.nn.Parameter(torch.zeros(1))
        opt = torch.optim.SGD([p], lr=float(argv_values(train, "--learning_rate")[0]))
        sched = musubi_scheduler(train, opt)
        if state is not None:
            opt.load_state_dict(state[0])
            sched.load_state_dict(state[1])
        lrs = []
        for _ in range(steps):
            lrs.append(opt.param_groups[0]["lr"])
            opt.step()
            sched.step()
        return lrs, (opt.state_dict(), sched.state_dict())

    _, first = musubi_train(spec)
    whole, _ = run(first, n)
    head, state = run(first, s)
    retry_ctx = CTX.__class__(**{**CTX.__dict__, "resume_from": Path("/o/x-step00000025-state"), "resume_step": s})
    _, retry = musubi_train(spec, retry_ctx)
    remaining = int(argv_values(retry, "--max_train_steps")[0])
    assert remaining == n - s
    tail, _ = run(retry, remaining, state)
    assert head + tail == pytest.approx(whole, rel=1e-9, abs=1e-12)
    if scheduler == "cosine":
        # what musubi's own `--lr_scheduler cosine` would do on the retry (num_training_steps = remaining steps)
        from transformers.optimization import get_cosine_schedule_with_warmup

        p = torch.nn.Parameter(torch.zeros(1))
        opt = torch.optim.SGD([p], lr=1e-4)
        own = get_cosine_schedule_with_warmup(opt, num_warmup_steps=5, num_training_steps=remaining)
        opt.load_state_dict(state[0])
        own.load_state_dict(state[1])
        own.step()
        assert opt.param_groups[0]["lr"] != pytest.approx(whole[s + 1])


def musubi_removed_step(step: int, every: int, last_n: int) -> int | None:
    """utils/train_utils.py get_remove_step_no."""
    r = step - last_n - 1
    r -= r % every
    return r if r >= 0 else None


@pytest.mark.parametrize("keep", [1, 2, 4, 7])
def test_musubi_keeps_exactly_keep_checkpoints(keep):
    spec = load_spec_data({"output": {"save": {"every": 250, "keep": keep}}, "training": {"max_steps": 4000}}).spec
    _, train = musubi_train(spec)
    last_n = int(argv_values(train, "--save_last_n_steps")[0])
    assert argv_values(train, "--save_last_n_steps_state") == [str(last_n)]
    kept: list[int] = []
    for step in range(250, 4001, 250):
        kept.append(step)
        removed = musubi_removed_step(step, 250, last_n)
        if removed in kept:
            kept.remove(removed)
    assert len(kept) == keep


def test_musubi_fp8_base_comes_with_fp8_scaled_and_shift_from_the_spec():
    spec = load_spec_data({"model": {"base": {"quantize": "float8"}}, "training": {"timestep_shift": 2.5,
                                                                                   "timestep_type": "shift"}}).spec
    _, train = musubi_train(spec)
    assert "--fp8_base" in train and "--fp8_scaled" in train
    assert argv_values(train, "--discrete_flow_shift") == ["2.5"]
    assert argv_values(train, "--timestep_sampling") == ["shift"]


def test_musubi_samples_with_a_prompt_file_it_can_read():
    import json

    spec = load_spec_data({"model": {"base": {"variant": "base"}},
                           "training": {"sample": {"enable": True, "every": 100}}}).spec
    res, train = musubi_train(spec)
    assert argv_values(train, "--sample_every_n_steps") == ["100"]
    prompts = json.loads(res.files["musubi_sample_prompts.json"])
    # sampling_prompts.load_prompts: a .json list of dicts; sample_image_inference reads these keys
    assert prompts[0]["sample_steps"] == 30 and prompts[0]["cfg_scale"] == 4.0
    assert {"prompt", "width", "height", "seed"} <= set(prompts[0])


# -- ai-toolkit -----------------------------------------------------------------------------------------------------
def aitoolkit_process(spec, profile="24gb"):
    res = render_spec(spec, "ai-toolkit", get_profile(profile), CTX)
    return res, yaml.safe_load(res.files["ai_toolkit.yaml"])["config"]["process"][0]


def aitoolkit_scheduler(train: dict, optimizer):
    """toolkit/scheduler.py get_lr_scheduler with BaseSDTrainProcess's total_iters = steps."""
    import torch

    params = {**train.get("lr_scheduler_params", {}), "total_iters": train["steps"]}
    name = train["lr_scheduler"]
    if name == "cosine":
        params["T_max"] = params.pop("total_iters")
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, **params)
    if name == "linear":
        return torch.optim.lr_scheduler.LinearLR(optimizer, **params)
    raise AssertionError(name)


def test_torch_linearlr_default_start_factor_is_a_third():
    import torch

    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    assert torch.optim.lr_scheduler.LinearLR(opt).start_factor == pytest.approx(1 / 3)  # why 'linear' rose


@pytest.mark.parametrize("scheduler", ["linear", "cosine"])
def test_aitoolkit_schedule_decays_like_the_built_in_trainer(scheduler):
    import torch

    from zlt.trainer.optim import lr_factor

    spec = spec_for("ai-toolkit", scheduler=scheduler, warmup_steps=0, max_steps=50)
    _, proc = aitoolkit_process(spec)
    train = proc["train"]
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=train["lr"])
    sched = aitoolkit_scheduler(train, opt)
    for step in range(50):
        sched.step(step)  # BaseSDTrainProcess: self.lr_scheduler.step(self.step_num)
        assert opt.param_groups[0]["lr"] == pytest.approx(1e-4 * lr_factor(step, 0, 50, scheduler), abs=1e-10)


@pytest.mark.parametrize("variant,name,extras", [
    ("deturbo", "ostris/Z-Image-De-Turbo", "Tongyi-MAI/Z-Image-Turbo"),
    ("base", "Tongyi-MAI/Z-Image", None),
    ("turbo", "Tongyi-MAI/Z-Image-Turbo", None),
])
def test_aitoolkit_trains_the_variants_weights_as_upstreams_recipe(variant, name, extras):
    # ui/src/app/jobs/new/options.tsx: zimage:deturbo, zimage, zimage:turbo
    _, proc = aitoolkit_process(load_spec_data({"model": {"base": {"variant": variant}}}).spec)
    assert proc["model"]["name_or_path"] == name
    assert proc["model"].get("extras_name_or_path") == extras
    assert ("assistant_lora_path" in proc["model"]) == (variant == "turbo")


def test_aitoolkit_base_samples_30_steps_with_guidance():
    spec = load_spec_data({"model": {"base": {"variant": "base"}}, "training": {"sample": {"enable": True}}}).spec
    _, proc = aitoolkit_process(spec)
    # z_image.py generate_single_image: guidance = max(0.0, gen_config.guidance_scale - 1.0)
    assert proc["sample"]["sample_steps"] == 30 and max(0.0, proc["sample"]["guidance_scale"] - 1.0) == 4.0
    _, turbo = aitoolkit_process(load_spec_data({}).spec)
    assert turbo["sample"]["sample_steps"] == 9 and max(0.0, turbo["sample"]["guidance_scale"] - 1.0) == 0.0


def test_aitoolkit_renders_shift_and_dropout_without_false_warnings():
    spec = spec_for("ai-toolkit", timestep_type="shift")
    spec.model.lora.dropout = 0.1
    res, proc = aitoolkit_process(spec)
    # custom_flowmatch_sampler.py set_train_timesteps handles 'shift'; NetworkConfig reads network.dropout
    assert proc["train"]["timestep_type"] == "shift" and proc["network"]["dropout"] == 0.1
    assert not any(w.startswith(("training.timestep_type", "model.lora.dropout")) for w in res.warnings)
    spec.training.timestep_shift = 2.0
    res, _ = aitoolkit_process(spec)
    assert any(w.startswith("training.timestep_shift: ai-toolkit fixes the Z-Image shift at 3") for w in res.warnings)


def test_aitoolkit_alpha_is_rank_and_the_render_says_so():
    # lora_special.py: `if self.peft_format: self.alpha = self.lora_dim` (transformers always use peft format)
    spec = load_spec_data({"model": {"lora": {"rank": 4, "alpha": 2}}}).spec
    res, proc = aitoolkit_process(spec)
    assert proc["network"]["linear_alpha"] == 4 and res.trained["lora_alpha"] == 4
    assert any(w.startswith("model.lora.alpha: ai-toolkit trains Z-Image LoRAs with alpha = rank (4)") for w in res.warnings)
    same = load_spec_data({"model": {"lora": {"rank": 4, "alpha": 4}}}).spec
    assert not any(w.startswith("model.lora.alpha") for w in aitoolkit_process(same)[0].warnings)


def test_aitoolkit_performance_log_only_at_debug():
    _, proc = aitoolkit_process(load_spec_data({}).spec)
    assert proc["performance_log_every"] == 0  # BaseSDTrainProcess prints timers when > 0 and step % every == 0
    _, proc = aitoolkit_process(load_spec_data({"job": {"logging": {"level": "debug"}}}).spec)
    assert proc["performance_log_every"] == 10


def test_aitoolkit_seed_reaches_run_py_through_its_environment():
    res, _ = aitoolkit_process(load_spec_data({"training": {"seed": 7}}).spec)
    assert res.argv[0][:2] == ["env", "SEED=7"]  # run.py: seed = int(os.environ["SEED"])


# -- gradient checkpointing: the user's value wins, else the profile ---------------------------------------------------
@pytest.mark.parametrize("backend", ["ai-toolkit", "musubi", "lightning"])
def test_gradient_checkpointing_user_value_wins_over_profile(backend):
    def gc(spec, profile):
        res = render_spec(spec, backend, get_profile(profile), CTX)
        return res.trained["gradient_checkpointing"], res

    unset = load_spec_data({"preset": "character"}).spec
    assert unset.training.gradient_checkpointing is None
    assert gc(unset, "24gb")[0] is True and gc(unset, "80gb")[0] is False  # the profile decides
    off = load_spec_data({"preset": "character", "training": {"gradient_checkpointing": False}}).spec
    on = load_spec_data({"preset": "character", "training": {"gradient_checkpointing": True}}).spec
    assert gc(off, "24gb")[0] is False and gc(on, "80gb")[0] is True
    value, res = gc(off, "24gb")
    assert "training.gradient_checkpointing: off (set in the spec)" in res.notes
    if backend == "musubi":
        assert "--gradient_checkpointing" not in res.argv[-1]
    assert load_spec_data({}).spec.training.gradient_checkpointing is True  # the style preset keeps the user's v0 value
