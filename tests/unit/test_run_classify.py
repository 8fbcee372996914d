import pytest

from zlt.core.causes import FAILURE_CAUSES
from zlt.core.events import Error
from zlt.run.classify import classify
from zlt.run.interpret import RunFacts


def facts(*lines, **kw):
    f = RunFacts(**kw)
    f.tail.extend(lines)
    return f


def judge(returncode, *lines, stop=None, signals=(), **kw):
    return classify(returncode=returncode, stop_reason=stop, signals_sent=list(signals), facts=facts(*lines, **kw),
                    oom_hint="--profile 16gb", timeout_hours=6)


def test_success_and_zero_exit_after_our_sigint_is_a_cancel():
    assert judge(0).status == "succeeded"
    out = judge(0, "Job stopped", stop="cancelled", signals=["SIGINT"])
    assert (out.status, out.cause) == ("cancelled", "cancelled")
    out = judge(-9, stop="timeout", signals=["SIGINT", "SIGTERM", "SIGKILL"])
    assert (out.status, out.cause) == ("timeout", "timeout") and "timeout_hours=6" in out.message


def test_a_stopped_job_names_the_command_that_continues_it():
    kw = {"signals_sent": ["SIGINT"], "facts": facts(), "job_id": "20261206-1"}
    assert classify(returncode=0, stop_reason="cancelled", **kw).hint == (
        "'zlt retry 20261206-1' continues it (from its last checkpoint, if one was saved)")
    assert "'zlt retry 20261206-1' continues from the last one" in classify(returncode=-9, stop_reason="timeout", **kw).hint


def test_sigint_from_elsewhere_is_not_a_success():
    out = judge(0, job_stopped=True)
    assert out.status == "cancelled"


def test_exit_zero_without_final_file_fails():
    out = classify(returncode=0, stop_reason=None, signals_sent=[], facts=facts(), expect_final=True, have_final=False)
    assert (out.status, out.cause) == ("failed", "unknown")


@pytest.mark.parametrize("lines, returncode, cause", [
    (["torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB"], 1, "cuda_oom"),
    (["subprocess.CalledProcessError: Command '[...]' died with <Signals.SIGKILL: 9>."], 1, "host_oom"),
    ([], -9, "host_oom"),
    ([], 137, "host_oom"),
    (["ModuleNotFoundError: No module named 'optimum'"], 1, "import_error"),
    (["huggingface_hub.errors.RepositoryNotFoundError: 401 Client Error. Repository Not Found for url"], 1, "model_download"),
    (["FileNotFoundError: [Errno 2] No such file or directory: '/models/ae.safetensors'"], 1, "model_missing"),
    (["huggingface_hub.errors.LocalEntryNotFoundError: Cannot find the requested files in the local cache"], 1,
     "model_missing"),
    (["model_download: cannot load the transformer of Tongyi-MAI/Z-Image-Turbo: HF_HUB_OFFLINE=1 forbids downloading "
      "and it is not in the Hugging Face cache"], 1, "model_missing"),
    (["model_download: training adapter o/r/a.safetensors is not available: 500 Server Error"], 1, "model_download"),
    # zlt/trainer/models.py's errors for a bad adapter file / a bad model folder
    (["training adapter /x/a.safetensors: no LoRA layers found (hint: use a Z-Image LoRA .safetensors)"], 1, "bad_input"),
    (["model.base.training_adapter 'nothing': not a file (hint: give a local .safetensors path)"], 1, "bad_input"),
    (["cannot load the transformer from /m/zi: Error no file named diffusion_pytorch_model.safetensors found in "
      "directory /m/zi/transformer. (hint: the folder must be a diffusers Z-Image folder (model_index.json, ...))"], 1,
     "bad_input"),
    (["safetensors_rust.SafetensorError: Error while deserializing header: HeaderTooLarge"], 1, "bad_input"),
    (["zimage_train_network.py: error: unrecognized arguments: --bogus"], 2, "bad_config"),
    (["voluptuous.error.MultipleInvalid: extra keys not allowed @ data['datasets'][0]['x']"], 1, "bad_config"),
    (["ValueError: shape mismatch"], 1, "unknown"),
])
def test_failure_causes(lines, returncode, cause):
    out = judge(returncode, *lines)
    assert out.status == "failed" and out.cause == cause and cause in FAILURE_CAUSES
    assert out.hint
    assert out.log_tail == lines


def test_oom_hint_comes_from_the_caller_and_fatal_fact_wins():
    out = judge(1, "ValueError: later noise", fatal_oom="OOM during training step 3 times in a row")
    assert out.cause == "cuda_oom" and out.hint == "--profile 16gb"


def test_unknown_carries_last_error_and_forty_lines():
    f = facts(*[f"line {i}" for i in range(100)])
    f.errors.append(Error(message="KeyError: 'x'"))
    out = classify(returncode=1, stop_reason=None, signals_sent=[], facts=f)
    assert out.cause == "unknown" and "KeyError" in out.message and len(out.log_tail) == 40
    assert out.log_tail[-1] == "line 99"


def test_our_own_sigkill_is_not_host_oom():
    out = judge(-9, signals=["SIGINT", "SIGTERM", "SIGKILL"])
    assert out.cause == "unknown"


def test_log_tail_folds_bar_redraws():
    from zlt.run.classify import compact_tail

    bars = [f"zs:  {i:2d}%|#         | {i}/100 [00:0{i % 10}<01:00, 1.00it/s]" for i in range(1, 30)]
    lines = ["Loading VAE", *bars, "Error running job: boom", *bars[:3]]
    assert compact_tail(lines) == ["Loading VAE", bars[-1], "Error running job: boom", bars[2]]
    assert len(compact_tail([f"line {i}" for i in range(100)])) == 40


def test_input_errors_are_not_worth_retrying():
    from zlt.core.causes import is_input_error

    assert all(is_input_error(c) for c in ("bad_input", "model_missing", "bad_config", "dataset"))
    assert not any(is_input_error(c) for c in ("unknown", "cuda_oom", "host_oom", "model_download", "diverged", None))


def test_musubi_tokenizer_from_the_hub_is_a_missing_model_file():
    """Issue 19.1: musubi's zimage_utils.load_qwen3 logs `Loading tokenizer from Tongyi-MAI/Z-Image`, then fails
    offline with an empty ImportError from transformers (a protobuf conversion fallback)."""
    f = facts("INFO:musubi_tuner.zimage.zimage_utils:Loading Qwen3 text encoder from /m/qwen_3_4b.safetensors",
              "INFO:musubi_tuner.zimage.zimage_utils:Setting Qwen3 to dtype: torch.bfloat16",
              "INFO:musubi_tuner.zimage.zimage_utils:Loading tokenizer from Tongyi-MAI/Z-Image",
              "Traceback (most recent call last):", "ImportError:")
    f.errors.append(Error(message="ImportError:"))
    out = classify(returncode=1, stop_reason=None, signals_sent=[], facts=f, hf_cli="hf")
    assert out.cause == "model_missing" and "Tongyi-MAI/Z-Image/tokenizer" in out.message
    assert out.hint.endswith("hf download Tongyi-MAI/Z-Image --include 'tokenizer/*'")
    f.tail.append("INFO:musubi_tuner.zimage_cache_text_encoder_outputs:Encoding prompts with Qwen3 text encoder")
    assert classify(returncode=1, stop_reason=None, signals_sent=[], facts=f).cause == "import_error"


def test_diverged():
    out = judge(1, "loss is nan", diverged_at=17)
    assert (out.status, out.cause) == ("failed", "diverged") and "step 17" in out.message and out.hint
    out = judge(0, stop="diverged", signals=["SIGINT"])
    assert (out.status, out.cause) == ("failed", "diverged")


def test_interrupt_tracebacks():
    from zlt.run.classify import is_interrupt

    assert is_interrupt(Error(message="KeyboardInterrupt", traceback=["Traceback (most recent call last):", "KeyboardInterrupt"]))
    assert is_interrupt(Error(message="subprocess.CalledProcessError: Command '[...]' died with <Signals.SIGINT: 2>."))
    assert not is_interrupt(Error(message="ValueError: boom"))


def test_a_later_failure_is_not_blamed_on_the_tokenizer():
    f = facts("INFO:musubi_tuner.zimage.zimage_utils:Loading tokenizer from Tongyi-MAI/Z-Image",
              "INFO:musubi_tuner.training.trainer_base:preparing accelerator",
              "Traceback (most recent call last):", "ValueError: Expected all tensors to be on the same device")
    f.errors.append(Error(message="ValueError: Expected all tensors to be on the same device"))
    assert classify(returncode=1, stop_reason=None, signals_sent=[], facts=f).cause == "unknown"
