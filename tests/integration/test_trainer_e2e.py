"""The built-in trainer end to end on the CPU with the tiny model, run as the runner runs it:
`python -m zlt.trainer trainer.json` in a subprocess, events read from stdout.

dataset -> cache -> 20 steps -> the LoRA loads into a tiny ZImagePipeline and changes its output (scale 0 gives the
base exactly) and lowers the loss on a fixed batch; stop at 10 + retry == uninterrupted; the retry re-encodes
nothing; SIGINT saves and exits 0.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("diffusers")

from zlt.backends.lightning import LIGHTNING  # noqa: E402
from zlt.backends.lightning.render import CONFIG_NAME  # noqa: E402
from zlt.core.events import event_from_dict  # noqa: E402
from zlt.profiles import get_profile  # noqa: E402
from zlt.render.base import RenderContext  # noqa: E402
from zlt.spec.load import load_spec_data  # noqa: E402

pytestmark = [pytest.mark.slow, pytest.mark.train]
REPO = Path(__file__).resolve().parents[2]
STEPS = 20


def spec_dict(data: Path) -> dict:
    return {
        "name": "e2e_tiny",
        "model": {"base": {"name": "zlt/tiny-zimage", "source": "builtin", "precision": "fp32"},
                  "lora": {"rank": 8, "alpha": 8}},
        "dataset": {"path": str(data), "resolution": 64, "repeats": 1, "caption": {"trigger_token": "<zstyle>", "dropout": 0.0},
                    "augment": {"horizontal_flip": False}},
        "training": {"backend": "lightning", "batch_size": 2, "gradient_accumulation": 1, "max_steps": STEPS,
                     "warmup_steps": 0, "learning_rate": 5e-3, "scheduler": "constant", "mixed_precision": "fp32",
                     "optimizer": {"type": "adamw", "use_8bit": False}, "gradient_checkpointing": False,
                     "timestep_type": "sigmoid", "seed": 3},
        "job": {"resources": {"gpu": 0, "min_vram_gb": None}},
        "output": {"save": {"every": 10, "keep": 2, "dtype": "fp32"}},
    }


def write_config(root: Path, data: Path, out: str, **overrides) -> Path:
    spec = load_spec_data(spec_dict(data)).spec
    ctx = RenderContext(output_dir=root / out, config_dir=root / out, cache_dir=root / "cache")
    result = LIGHTNING.render(spec, get_profile("cpu"), ctx)
    cfg = json.loads(result.files[CONFIG_NAME])
    for section, values in overrides.items():
        cfg[section].update(values) if isinstance(values, dict) else cfg.__setitem__(section, values)
    path = root / out / CONFIG_NAME
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(cfg))
    assert result.argv[0][1:3] == ["-m", "zlt.trainer"]
    return path


def run_trainer(config: Path) -> tuple[int, list[dict], str]:
    r = subprocess.run([sys.executable, "-m", "zlt.trainer", str(config)], capture_output=True, text=True, timeout=600,
                       cwd=REPO, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    events = [json.loads(line) for line in r.stdout.splitlines()]  # stdout is JSON lines, nothing else
    return r.returncode, events, r.stderr


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("trainer_e2e")


@pytest.fixture(scope="module")
def data(root: Path) -> Path:
    subprocess.run([sys.executable, str(REPO / "examples/quickstart/make_dataset.py"), str(root / "ds"), "--size", "96"],
                   check=True, capture_output=True)
    return root / "ds"


@pytest.fixture(scope="module")
def full_run(root: Path, data: Path):
    rc, events, stderr = run_trainer(write_config(root, data, "full"))
    assert rc == 0, stderr
    return events


def test_events_tell_the_whole_run(full_run, root: Path):
    for ev in full_run:
        assert event_from_dict(ev) is not None, ev
    phases = [e["phase"] for e in full_run if e["type"] == "phase"]
    for a, b in [("caching_latents", "training"), ("loading_model", "training"), ("training", "saving")]:
        assert phases.index(a) < phases.index(b)
    assert any(e["type"] == "warning" and "tiny random test model" in e["message"] for e in full_run)
    steps = [e["step"] for e in full_run if e["type"] == "progress"]
    assert steps[0] == 1 and steps[-1] == STEPS and steps == sorted(steps)
    ckpts = [(Path(e["path"]).name, e["step"]) for e in full_run if e["type"] == "checkpoint"]
    assert ckpts == [("e2e_tiny_000000010.safetensors", 10), ("e2e_tiny_000000020.safetensors", 20), ("e2e_tiny.safetensors", 20)]
    log = [json.loads(x) for x in (root / "full" / "loss_log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == list(range(1, STEPS + 1))


def fixed_batch_loss(pipe, images: list[Path], captions: list[str]) -> float:
    """Flow-matching loss of pipe.transformer on fixed latents, captions, noise and sigmas."""
    import numpy as np
    from PIL import Image

    from zlt.trainer.cache import PipelineEncoder
    from zlt.trainer.loss import flow_matching_loss

    enc = PipelineEncoder(pipe, torch.device("cpu"))
    arrays = [np.asarray(Image.open(p).convert("RGB").resize((64, 64)), dtype="float32") / 127.5 - 1 for p in images]
    pix = torch.stack([torch.from_numpy(a).permute(2, 0, 1) for a in arrays])
    lat, caps = list(enc.encode_images(pix)), enc.encode_texts(captions)
    g = torch.Generator().manual_seed(123)
    total = []
    with torch.no_grad():
        for sigma in (0.2, 0.4, 0.6, 0.8):
            noise = [torch.randn(x.shape, generator=g) for x in lat]
            total.append(float(flow_matching_loss(pipe.transformer, lat, caps, torch.full((len(lat),), sigma), noise)))
    return sum(total) / len(total)


def test_lora_loads_changes_output_and_lowers_the_loss(full_run, root: Path, data: Path):
    from safetensors import safe_open

    from zlt.trainer.tiny import build_tiny_pipeline

    final = root / "full" / "e2e_tiny.safetensors"
    with safe_open(str(final), "pt") as f:
        meta = f.metadata()
    assert json.loads(meta["training_info"]) == {"step": STEPS, "epoch": json.loads(meta["training_info"])["epoch"]}
    assert meta["zlt.tiny_model"] == "true"

    pipe = build_tiny_pipeline()
    gen = lambda: pipe("<zstyle> a boat", height=64, width=64, num_inference_steps=3, guidance_scale=0.0,  # noqa: E731
                       generator=torch.Generator().manual_seed(0), output_type="np").images
    images = sorted(data.glob("*.png"))
    captions = ["<zstyle> " + p.with_suffix(".txt").read_text().strip() for p in images]
    base_img, base_loss = gen(), fixed_batch_loss(pipe, images, captions)
    pipe.load_lora_weights(str(final), adapter_name="style")
    lora_img, lora_loss = gen(), fixed_batch_loss(pipe, images, captions)
    assert abs(lora_img - base_img).max() > 1e-3
    assert lora_loss < base_loss * 0.97, (base_loss, lora_loss)
    pipe.set_adapters(["style"], adapter_weights=[0.0])
    assert (gen() == base_img).all()  # disabled LoRA == base, exactly


def test_stop_at_10_and_retry_equals_uninterrupted(full_run, root: Path, data: Path):
    from safetensors.torch import load_file

    rc, first, stderr = run_trainer(write_config(root, data, "split", training={"stop_after_step": 10}))
    assert rc == 0, stderr
    assert [e["step"] for e in first if e["type"] == "progress"][-1] == 10
    stop = next(e["message"] for e in first if e["type"] == "warning" and "stopped at step 10/20" in e["message"])
    assert stop.endswith("checkpoint and resume state saved")  # no bare "retry to continue": the runner names it
    rc, second, stderr = run_trainer(write_config(root, data, "split", output={"resume": True}))
    assert rc == 0, stderr
    resumed = [e for e in second if e["type"] == "resumed"]
    assert len(resumed) == 1 and resumed[0]["step"] == 10
    steps = [e["step"] for e in second if e["type"] == "progress"]
    assert steps[0] == 11 and steps[-1] == STEPS
    # the retry found every latent and caption in the cache: no encoder was even loaded
    messages = [e["message"] for e in second if e["type"] == "phase"]
    assert "0 to encode, 12 from cache" in messages and not any("VAE and text encoder" in m for m in messages)
    a, b = load_file(str(root / "full" / "e2e_tiny.safetensors")), load_file(str(root / "split" / "e2e_tiny.safetensors"))
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(b[k], a[k], rtol=1e-5, atol=1e-6)
    full_log = (root / "full" / "loss_log.jsonl").read_text().splitlines()
    split_log = (root / "split" / "loss_log.jsonl").read_text().splitlines()
    assert [json.loads(x)["loss"] for x in split_log] == pytest.approx([json.loads(x)["loss"] for x in full_log], rel=1e-5)


def test_sigint_finishes_the_step_saves_and_exits_0(root: Path, data: Path):
    config = write_config(root, data, "sigint", training={"max_steps": 100000}, output={"save_every": 100000})
    proc = subprocess.Popen([sys.executable, "-m", "zlt.trainer", str(config)], stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True, cwd=REPO)
    events = []
    for line in proc.stdout:
        events.append(json.loads(line))
        if events[-1]["type"] == "progress":
            proc.send_signal(signal.SIGINT)
            break
    events += [json.loads(line) for line in proc.stdout]
    assert proc.wait(timeout=120) == 0
    stop = [e for e in events if e["type"] == "checkpoint"]
    assert len(stop) == 1
    n = stop[0]["step"]
    assert Path(stop[0]["path"]).name == f"e2e_tiny_{n:09d}.safetensors"
    assert any(e["type"] == "warning" and "SIGINT" in e["message"] for e in events)
    rc, after, stderr = run_trainer(write_config(root, data, "sigint", training={"max_steps": n + 2}, output={"resume": True}))
    assert rc == 0, stderr
    assert [e["step"] for e in after if e["type"] == "resumed"] == [n]
    assert [e["step"] for e in after if e["type"] == "progress"] == [n + 1, n + 2]


def test_bad_config_fails_with_an_error_event(root: Path):
    bad = root / "bad.json"
    bad.write_text(json.dumps({"name": "x"}))
    rc, events, _ = run_trainer(bad)
    assert rc == 1 and events[-1]["type"] == "error" and "invalid trainer config" in events[-1]["message"]


def test_ddp_on_two_cpu_processes(root: Path, data: Path):
    """Fabric's DDP strategy (gloo) with two ranks: one writer, the loss averaged over ranks."""
    config = write_config(root, data, "ddp", training={"max_steps": 4}, output={"save_every": 2},
                          runtime={"devices": 2, "strategy": "ddp"})
    rc, events, stderr = run_trainer(config)
    assert rc == 0, stderr
    assert "MEMBER: 2/2" in stderr
    assert any(e["type"] == "phase" and "on cpu x2" in e["message"] for e in events)
    assert [e["step"] for e in events if e["type"] == "checkpoint"] == [2, 4, 4]  # written once, by rank 0
    assert (root / "ddp" / "e2e_tiny.safetensors").is_file()
