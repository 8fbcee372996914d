"""From a client's spec dict to a LoadedSpec: path fences, callback URL, every error at once."""

from __future__ import annotations

from pathlib import Path

import pytest

from zlt.core.errors import SpecError
from zlt.serve.intake import Fence, load_client_spec


@pytest.fixture
def root(tmp_path: Path) -> Path:
    r = tmp_path / "data"
    (r / "style").mkdir(parents=True)
    (r / "style" / "a.png").write_bytes(b"x")
    return r


def fence(root: Path, home: Path) -> Fence:
    return Fence((root,), (home,))


def test_a_dataset_path_in_a_root_becomes_absolute(root: Path, tmp_path: Path):
    loaded = load_client_spec({"dataset": {"path": "style"}}, fence(root, tmp_path))
    assert loaded.spec.dataset.path == str((root / "style").resolve())
    assert loaded.spec.name == "style"  # derived from the folder, as for a spec file


def test_every_problem_is_reported_together(root: Path, tmp_path: Path):
    body = {"dataset": {"path": "/etc"}, "training": {"max_steps": 0, "warmup_steps": 0, "bogus": 1},
            "output": {"registry": {"path": "/artifacts/lora/"}}, "job": {"callback_url": "ftp://x"}}
    with pytest.raises(SpecError) as e:
        load_client_spec(body, fence(root, tmp_path))
    paths = [x.path for x in e.value.errors]
    for p in ("dataset.path", "output.registry.path", "job.callback_url", "training.max_steps", "training.bogus"):
        assert p in paths
    assert len(paths) == len(set((x.path, x.message) for x in e.value.errors))


def test_a_missing_dataset_path_says_how_to_give_one(root: Path, tmp_path: Path):
    with pytest.raises(SpecError) as e:
        load_client_spec({"model": {"lora": {"rank": 8}}}, fence(root, tmp_path))
    (err,) = e.value.errors
    assert err.path == "dataset.path" and "zip" in err.hint


def test_an_upload_replaces_the_path_with_a_warning(root: Path, tmp_path: Path):
    up = tmp_path / "up" / "set"
    up.mkdir(parents=True)
    (up / "a.png").write_bytes(b"x")
    loaded = load_client_spec({"dataset": {"path": "/nowhere"}}, fence(root, tmp_path), dataset_dir=up)
    assert loaded.spec.dataset.path == str(up)
    assert loaded.warnings == ["dataset.path '/nowhere' replaced by the uploaded dataset"]


def test_the_body_must_be_an_object(root: Path, tmp_path: Path):
    with pytest.raises(SpecError, match="1 problem in <http>"):
        load_client_spec(["not", "a", "spec"], fence(root, tmp_path))


def test_without_a_fence_relative_paths_follow_base_dir(tmp_path: Path):
    (tmp_path / "ds").mkdir()
    (tmp_path / "ds" / "a.png").write_bytes(b"x")
    loaded = load_client_spec({"dataset": {"path": "ds"}}, Fence(None, None), base_dir=tmp_path)
    assert loaded.spec.dataset.path == str(tmp_path / "ds")


def test_the_users_sketch_body_shape_validates(root: Path, tmp_path: Path):
    """`POST /lora/train {model, dataset, training, output, job}` from the mission, with a server dataset path."""
    body = {
        "model": {"base": {"name": "Tongyi-MAI/Z-Image-Turbo", "source": "huggingface", "precision": "fp16",
                           "variant": "turbo"},
                  "lora": {"enable": True, "rank": 16, "alpha": 16, "dropout": 0.0,
                           "target_modules": ["attention.to_q", "attention.to_k", "attention.to_v", "attention.to_out"]}},
        "dataset": {"path": "style", "type": "image_only_with_caption", "resolution": 1024, "center_crop": True,
                    "caption": {"strategy": "filename_or_txt", "trigger_token": "<zstyle>"}, "repeats": 10,
                    "shuffle": True, "augment": {"horizontal_flip": True, "color_jitter": False}},
        "training": {"backend": "lightning", "batch_size": 1, "gradient_accumulation": 4, "effective_batch_size": 4,
                     "max_steps": 2000, "warmup_steps": 100, "learning_rate": 1e-4, "scheduler": "cosine",
                     "optimizer": {"type": "adamw", "use_8bit": True}, "mixed_precision": "fp16",
                     "gradient_checkpointing": True},
        "job": {"type": "async", "timeout_hours": 6, "retry": {"max_retries": 1},
                "resources": {"gpu": 1, "min_vram_gb": 24}, "logging": {"level": "info"}},
        "output": {"format": "safetensors", "save": {"lora_weights": True, "config": True, "training_meta": True},
                   "naming": {"pattern": "{job_id}_{style_name}_v0"}},
    }
    loaded = load_client_spec(body, fence(root, tmp_path))
    assert loaded.spec.training.effective_batch_size == 4
