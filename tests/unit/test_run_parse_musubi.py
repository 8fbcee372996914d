"""musubi-tuner console output (formats read from kohya-ss/musubi-tuner @30c658c: training/trainer_base.py,
utils/train_utils.py, logging.basicConfig) -> events."""

import pytest

from zlt.backends.musubi.parse import parse_musubi
from zlt.core.events import Checkpoint, Error, Oom, Phase, Progress, Warning_
from zlt.run.lines import split_text

TRAIN_LOG = (
    "INFO:musubi_tuner.dataset.config_utils:Load dataset config from /job/render/musubi_dataset.toml\n"
    "INFO:musubi_tuner.training.trainer_base:resume training from local state: /job/output/zs-step00000500-state\n"
    "running training / 学習開始\n"
    "  num train items / 学習画像、動画数: 400\n"
    "  total optimization steps / 学習ステップ数: 1000\n"
    "\rsteps:   0%|          | 0/1000 [00:00<?, ?it/s]"
    "INFO:musubi_tuner.training.trainer_base:DiT dtype: torch.bfloat16, device: cuda:0\n"
    "\nepoch 1/3\n"
    "\rsteps:   0%|          | 1/1000 [00:04<1:06:36,  4.00s/it]"
    "\rsteps:   0%|          | 1/1000 [00:04<1:06:36,  4.00s/it, avr_loss=0.521]"
    "\rsteps:  50%|█████     | 500/1000 [00:23<00:23, 4.23it/s, avr_loss=0.43]"
    "\nsaving checkpoint: /job/output/zs-step00000500.safetensors\n"
    "INFO:musubi_tuner.utils.train_utils:saving state at step 500\n"
    "removing old checkpoint: /job/output/zs-step00000250.safetensors\n"
    "\rsteps: 100%|██████████| 1000/1000 [00:47<00:00, 4.21it/s, avr_loss=0.35]\n"
    "INFO:musubi_tuner.utils.train_utils:saving last state.\n"
    "\nsaving checkpoint: /job/output/zs.safetensors\n"
    "INFO:musubi_tuner.training.trainer_base:model saved.\n"
)


def events(text):
    return [ev for ev in (parse_musubi(line) for line in split_text(text)) if ev is not None]


def test_training_log_events():
    evs = events(TRAIN_LOG)
    assert evs[0] == Phase("loading_model", "resuming from /job/output/zs-step00000500-state")
    progress = [e for e in evs if isinstance(e, Progress)]
    assert [p.step for p in progress] == [0, 1, 1, 500, 1000]
    assert progress[2].loss == pytest.approx(0.521) and progress[2].it_s == pytest.approx(0.25)
    assert progress[3].loss == pytest.approx(0.43) and progress[3].it_s == pytest.approx(4.23)
    assert Checkpoint(path="/job/output/zs-step00000500.safetensors", step=500) in evs
    assert Checkpoint(path="/job/output/zs.safetensors", step=None) in evs
    assert Phase("saving", "saving state at step 500") in evs


def test_caching_bars_without_description_are_not_progress():
    assert parse_musubi("100%|██████████| 40/40 [00:12<00:00,  3.21it/s]") is None
    assert parse_musubi("40it [00:12,  3.21it/s]") is None


def test_sampling_is_a_phase():
    ev = parse_musubi("INFO:musubi_tuner.training.trainer_base:generating sample images at step / サンプル画像生成 ステップ: 500")
    assert isinstance(ev, Phase) and ev.phase == "sampling"
    bar = parse_musubi("Sampling timesteps for prompt 1:  40%|████      | 8/20 [00:02<00:03,  3.9it/s]")
    assert isinstance(bar, Phase) and bar.phase == "sampling"


def test_argparse_rejection_and_warnings():
    assert parse_musubi("zimage_train_network.py: error: unrecognized arguments: --bogus") == Error(
        message="zimage_train_network.py: error: unrecognized arguments: --bogus")
    assert parse_musubi("WARNING:musubi_tuner.dataset.image_video_dataset:no captions found for 2 images") == Warning_(
        message="no captions found for 2 images")


def test_cuda_oom():
    ev = parse_musubi("torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 1.50 GiB.")
    assert isinstance(ev, Oom) and ev.fatal


@pytest.mark.parametrize("line", [
    "steps:  50%|█████     | 100/200 [00:23<00:23, 4.23it/s, avr_loss=0.43]",
    "steps:   0%|          | 1/1000 [00:04<1:06:36,  4.00s/it]",
])
def test_hot_path_agrees_with_the_general_parser(line):
    from zlt.backends.musubi import parse as mod

    fast = mod._fast_progress(line)
    slow = mod.parse_bar(line)
    assert (fast.step, fast.total, fast.it_s, fast.elapsed_s, fast.eta_s) == (
        slow.n, slow.total, slow.it_s, slow.elapsed_s, slow.remaining_s)
    assert fast.loss == mod.postfix_values(slow.postfix).get("avr_loss")
