"""ai-toolkit console output (formats read from ostris/ai-toolkit @27a03a9: run.py, BaseSDTrainProcess,
z_image.py, ToolkitProgressBar) -> events."""

import pytest

from zlt.backends.aitoolkit.parse import parse_aitoolkit
from zlt.core.events import Checkpoint, Error, Oom, Phase, Progress, Resumed, Warning_
from zlt.run.lines import split_text

NAME = "first_lora_v1"

# A resumed run: loading, caches, sampling bars, training redraws (\r), a save, an in-step OOM.
RESUMED_RUN = (
    "Running 1 job\n"
    "#### IMPORTANT RESUMING FROM /out/first_lora_v1/first_lora_v1_000000500.safetensors ####\n"
    "Loading from /out/first_lora_v1/first_lora_v1_000000500.safetensors\n"
    "Found step 500 in metadata, starting from there\n"
    "Loading ZImage model\nLoading transformer\nLoading assistant LoRA\nMerging in assistant LoRA\n"
    "Quantizing Transformer\nText Encoder\nQuantizing Text Encoder\nLoading VAE\nModel Loaded\n"
    "\rCaching latents to disk:   0%|          | 0/20 [00:00<?, ?it/s]"
    "\rCaching latents to disk: 100%|##########| 20/20 [00:03<00:00,  5.71it/s]\n"
    "\rCaching text embeddings to disk:  50%|█████     | 10/20 [00:01<00:01,  9.90it/s]\n"
    "Generating baseline samples before training\n"
    "\rGenerating Samples:  50%|#####     | 1/2 [00:09<00:09,  9.01s/it]\n"
    "\rfirst_lora_v1:  25%|##5       | 500/2000 [00:00<?, ?it/s]"
    "\rfirst_lora_v1:  25%|##5       | 501/2000 [00:03<1:14:57, 3.00s/it, lr: 2.0e-04 loss: 4.102e-01]"
    "\rfirst_lora_v1:  26%|██▌       | 519/2000 [00:55<1:10:54, 2.87s/it, lr: 2.0e-04 loss: 3.811e-01]"
    "\n"
    "################################################\n"
    "# OOM during training step, skipping batch 1/3 #\n"
    "################################################\n"
    "\nSaving at step 750\n"
    "Saved checkpoint to /out/first_lora_v1/first_lora_v1_000000750.safetensors\n"
    "Saved optimizer to /out/first_lora_v1/optimizer.pt\n"
    "Removing old save: /out/first_lora_v1/first_lora_v1_000000250.safetensors\n"
)


def events(text, name=NAME):
    return [ev for ev in (parse_aitoolkit(line, name) for line in split_text(text)) if ev is not None]


def test_resumed_run_event_sequence():
    evs = events(RESUMED_RUN)
    kinds = [type(e).__name__ for e in evs]
    assert kinds[:2] == ["Phase", "Resumed"]
    assert evs[0] == Phase("loading_model", "resuming from /out/first_lora_v1/first_lora_v1_000000500.safetensors")
    assert evs[1] == Resumed(step=500)
    phases = [e.phase for e in evs if isinstance(e, Phase)]
    assert phases.index("quantizing") < phases.index("caching_latents") < phases.index("caching_text") < phases.index("sampling")
    progress = [e for e in evs if isinstance(e, Progress)]
    assert [(p.step, p.total) for p in progress] == [(500, 2000), (501, 2000), (519, 2000)]
    assert progress[-1].loss == pytest.approx(0.3811) and progress[-1].lr == pytest.approx(2e-4)
    assert progress[-1].it_s == pytest.approx(1 / 2.87) and progress[-1].eta_s == 4254
    assert Oom(fatal=False, message="OOM during training step, batch skipped", attempt=1) in evs
    assert Phase("saving", "step 750") in evs
    assert Checkpoint(path="/out/first_lora_v1/first_lora_v1_000000750.safetensors", step=750) in evs


def test_caching_sampling_quantize_and_download_bars_are_not_training():
    for line in (
        "Caching latents to disk:  40%|####      | 8/20 [00:01<00:02,  5.7it/s]",
        "Generating Samples: 100%|##########| 2/2 [00:18<00:00,  9.01s/it]",
        "Quantizing blocks (qfloat8):  30%|███       | 9/30 [00:04<00:09,  2.2it/s]",
        "Loading checkpoint shards: 100%|██████████| 3/3 [00:02<00:00,  1.2it/s]",
        "Fetching 17 files: 100%|██████████| 17/17 [00:00<00:00, 2300.1it/s]",
    ):
        ev = parse_aitoolkit(line, NAME)
        assert isinstance(ev, Phase), line
    # A bar of some other tool with a loss-less postfix is not training progress either.
    assert parse_aitoolkit("Encoding prompts:  50%|#####     | 1/2 [00:01<00:01,  1.0it/s]", NAME) is None


def test_training_bar_without_known_name_needs_a_loss_postfix():
    line = "zstyle:  10%|#         | 200/2000 [09:30<1:25:30, 2.85s/it, lr: 1.0e-04 loss: 2.5e-01]"
    assert isinstance(parse_aitoolkit(line), Progress)
    assert parse_aitoolkit("zstyle:  10%|#         | 200/2000 [09:30<1:25:30, 2.85s/it]") is None


def test_oom_abort_and_cuda_oom_are_fatal():
    ev = parse_aitoolkit("Error running job: OOM during training step 3 times in a row, aborting training", NAME)
    assert ev == Oom(fatal=True, message="OOM during training step 3 times in a row, aborting training")
    ev = parse_aitoolkit("torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB", NAME)
    assert isinstance(ev, Oom) and ev.fatal


def test_failure_output():
    text = (
        "Error running job: shape mismatch\n\n========================================\nResult:\n"
        " - 0 completed jobs\n - 1 failure\n========================================\n"
        "Traceback (most recent call last):\n  File \"run.py\", line 120, in <module>\n    main()\n"
        "ValueError: shape mismatch\n"
    )
    evs = events(text)
    assert evs[0] == Error(message="shape mismatch")


def test_sigint_stop_banner():
    assert parse_aitoolkit("Job stopped", NAME) == Warning_(message="ai-toolkit: Job stopped (interrupted)")


def test_python_warning_line():
    ev = parse_aitoolkit("/venv/lib/python3.11/site-packages/torch/utils/checkpoint.py:87: UserWarning: None of the inputs have requires_grad=True", NAME)
    assert ev == Warning_(message="UserWarning: None of the inputs have requires_grad=True")


@pytest.mark.parametrize("line", ["", "   ", "Timer 'first_lora_v1 Timer':", " - 2.8123s avg - train_loop, num = 10",
                                  "Saved optimizer to /out/optimizer.pt", "Skipping first sample due to config setting"])
def test_noise_is_ignored(line):
    assert parse_aitoolkit(line, NAME) is None


@pytest.mark.parametrize("line", [
    "zs:  26%|##5       | 519/2000 [24:43<1:10:54, 2.87s/it, lr: 2.0e-04 loss: 3.811e-01]",
    "zs:  26%|██▌       | 519/2000 [00:55<01:10, 9.50it/s, lr: 2.0e-04 loss: 3.811e-01]",
    "zs:   0%|          | 0/2000 [00:00<?, ?it/s]",
])
def test_hot_path_agrees_with_the_general_parser(line):
    from zlt.backends.aitoolkit import parse as mod

    fast = parse_aitoolkit(line, "zs")
    mod._training_bar.cache_clear()
    general = mod._bar_event(line.replace("zs:", "zs :", 1), "zs")  # defeats the hot path only
    assert fast == general


def test_unusual_postfix_takes_the_general_path():
    ev = parse_aitoolkit("zs:  10%|#         | 200/2000 [09:30<1:25:30, 2.85s/it, lr: 1.0e-04 loss: 2.5e-01 diff: 1.0e-02]", "zs")
    assert ev == Progress(step=200, total=2000, loss=0.25, lr=1e-4, it_s=pytest.approx(1 / 2.85), elapsed_s=570.0,
                          eta_s=5130.0)
