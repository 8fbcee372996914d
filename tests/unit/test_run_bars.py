import pytest

from zlt.run.bars import parse_bar, parse_interval, postfix_values


def test_ai_toolkit_bar_ascii_s_per_it():
    bar = parse_bar("first_lora_v1: 26%|##5       | 519/2000 [24:43<1:10:54, 2.87s/it, lr: 2.0e-04 loss: 3.811e-01]")
    assert (bar.desc, bar.n, bar.total) == ("first_lora_v1", 519, 2000)
    assert bar.elapsed_s == 24 * 60 + 43
    assert bar.remaining_s == 3600 + 10 * 60 + 54
    assert bar.it_s == pytest.approx(1 / 2.87)
    assert bar.postfix == "lr: 2.0e-04 loss: 3.811e-01"


def test_musubi_bar_unicode_it_per_s():
    bar = parse_bar("steps:  50%|█████     | 100/200 [00:23<00:23, 4.23it/s, avr_loss=0.43]")
    assert (bar.desc, bar.n, bar.total, bar.it_s) == ("steps", 100, 200, 4.23)
    assert bar.postfix == "avr_loss=0.43"


def test_unknown_rate_and_remaining():
    bar = parse_bar("zs:   0%|          | 0/3000 [00:00<?, ?it/s]")
    assert (bar.n, bar.total, bar.it_s, bar.remaining_s, bar.postfix) == (0, 3000, None, None, "")


def test_bar_without_description_and_scaled_rate():
    bar = parse_bar("100%|██████████| 10/10 [00:01<00:00, 1.20kit/s]")
    assert (bar.desc, bar.n, bar.it_s) == ("", 10, 1200.0)


def test_hours_beyond_a_day():
    assert parse_interval("30:00:00") == 30 * 3600
    assert parse_interval("?") is None


@pytest.mark.parametrize("line", [
    "Loading VAE",
    "4it [00:02,  1.8it/s]",  # no total: not a progress bar we can use
    "model.safetensors:  45%|####5     | 1.8G/4.0G [00:10<00:12, 180MB/s]",  # download bar, sizes not counts
    "accuracy 50%|fine",
])
def test_not_bars(line):
    assert parse_bar(line) is None


def test_postfix_values_both_styles():
    assert postfix_values("lr: 2.0e-04 loss: 3.811e-01") == {"lr": 2e-4, "loss": 0.3811}
    assert postfix_values("avr_loss=0.43, lr=1e-4") == {"avr_loss": 0.43, "lr": 1e-4}
    assert postfix_values("Keys Scaled=3, avr_loss=nan") == {"Keys Scaled": 3.0, "avr_loss": pytest.approx(float("nan"), nan_ok=True)}
    assert postfix_values("note: fine") == {}
