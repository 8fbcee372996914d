from zlt.backends.aitoolkit.parse import parse_aitoolkit
from zlt.backends.musubi.parse import parse_musubi
from zlt.core.events import Checkpoint, Error, Oom, Phase, Progress, Resumed, Warning_
from zlt.run.interpret import LogInterpreter


def make(parser=lambda line: parse_aitoolkit(line, "zs"), **kw):
    out = []
    return LogInterpreter(parser, out.append, **kw), out


def bar(n, total=100, loss=0.5, name="zs"):
    return f"{name}: {n * 100 // total:3d}%|#         | {n}/{total} [00:10<00:20, 2.00it/s, lr: 1.0e-04 loss: {loss:.3e}]"


def test_first_progress_opens_training_phase_and_phases_are_deduplicated():
    it, out = make()
    for line in ["Loading transformer", "Loading transformer", "Quantizing Transformer", bar(1), bar(2)]:
        it.feed(line)
    assert out[0] == Phase("loading_model", "Loading transformer")
    assert out[1] == Phase("quantizing", "Quantizing Transformer")
    assert out[2] == Phase("training", "")
    assert [e.step for e in out if isinstance(e, Progress)] == [1, 2]
    assert it.facts.first_loss == 0.5 and it.facts.last_step == 2


def test_traceback_becomes_one_error_with_frames():
    it, out = make()
    for line in ["Error running job: boom", "Traceback (most recent call last):", '  File "run.py", line 120, in <module>',
                 "    main()", '  File "x.py", line 3, in f', "    raise ValueError('boom')", "ValueError: boom"]:
        it.feed(line, "stderr")
    errors = [e for e in out if isinstance(e, Error)]
    assert errors[0] == Error(message="boom")
    assert errors[1].message == "ValueError: boom"
    assert errors[1].traceback[0] == "Traceback (most recent call last):"
    assert errors[1].traceback[-1] == "ValueError: boom"


def test_traceback_cut_at_exit_still_reported():
    it, out = make()
    it.feed("Traceback (most recent call last):", "stderr")
    it.feed('  File "run.py", line 1, in <module>', "stderr")
    it.finish()
    assert isinstance(out[-1], Error) and out[-1].traceback[0].startswith("Traceback")


def test_tracebacks_on_two_streams_do_not_mix():
    it, out = make()
    it.feed("Traceback (most recent call last):", "stderr")
    it.feed("normal stdout line", "stdout")
    it.feed("  File \"a.py\", line 1, in f", "stderr")
    it.feed("KeyError: 'x'", "stderr")
    err = [e for e in out if isinstance(e, Error)][0]
    assert "normal stdout line" not in err.traceback and err.message == "KeyError: 'x'"


def test_checkpoint_announced_after_the_save_and_saving_flag():
    it, out = make(parse_musubi)
    it.feed("steps:  50%|█████     | 100/200 [00:23<00:23, 4.23it/s, avr_loss=0.43]", "stderr")
    it.feed("saving checkpoint: /o/zs-step00000100.safetensors")
    assert it.saving and not any(isinstance(e, Checkpoint) for e in out)
    it.feed("INFO:musubi_tuner.utils.train_utils:saving state at step 100", "stderr")
    assert any(isinstance(e, Checkpoint) for e in out) and it.saving
    it.feed("steps:  50%|█████     | 101/200 [00:23<00:23, 4.23it/s, avr_loss=0.42]", "stderr")
    assert not it.saving


def test_musubi_resume_offsets_steps_and_checkpoints():
    it, out = make(parse_musubi, step_offset=500)
    it.feed("steps:  10%|█         | 50/500 [00:10<01:30, 5.00it/s, avr_loss=0.4]", "stderr")
    it.feed("saving checkpoint: /o/resume_from_00000500/zs-step00000050.safetensors")
    it.finish()
    prog = next(e for e in out if isinstance(e, Progress))
    assert (prog.step, prog.total) == (550, 1000)
    assert next(e for e in out if isinstance(e, Checkpoint)).step == 550


def test_progress_dropped_in_caching_steps():
    it, out = make(parse_musubi, progress_allowed=False)
    it.feed("steps:  10%|█         | 50/500 [00:10<01:30, 5.00it/s]")
    assert out == []


def test_resume_path_joined_from_ai_toolkit_lines():
    it, out = make()
    it.feed("#### IMPORTANT RESUMING FROM /o/zs_000000250.safetensors ####")
    it.feed("Found step 250 in metadata, starting from there")
    assert Resumed(step=250, path="/o/zs_000000250.safetensors") in out


def test_fatal_oom_once_warnings_deduplicated_job_stopped_noted():
    it, out = make()
    it.feed("Error running job: OOM during training step 3 times in a row, aborting training")
    it.feed("RuntimeError: OOM during training step 3 times in a row, aborting training")
    it.feed("/x.py:1: UserWarning: careful")
    it.feed("/x.py:1: UserWarning: careful")
    it.feed("Job stopped")
    assert sum(isinstance(e, Oom) for e in out) == 1
    assert sum(isinstance(e, Warning_) and "careful" in e.message for e in out) == 1
    assert it.facts.job_stopped and it.facts.fatal_oom


def test_superseded_redraws_in_one_chunk_are_skipped_but_tail_kept():
    # Issue 19.6: every step's line feeds the series; only a redraw of the same step is superseded.
    it, out = make()
    lines = [bar(1), bar(1, loss=0.4)] + [bar(i) for i in range(2, 6)] + ["Saving at step 5", bar(6)]
    it.feed_lines(lines, "stderr")
    progress = [e for e in out if isinstance(e, Progress)]
    assert [e.step for e in progress] == [1, 2, 3, 4, 5, 6]
    assert progress[0].loss == 0.4
    assert list(it.facts.tail)[-1] == bar(6) and len(it.facts.tail) == 8


def test_every_progress_reaches_on_progress():
    series = []
    it, out = make(on_progress=series.append)
    it.feed_lines([bar(i, loss=0.5 - i / 100) for i in range(1, 11)], "stderr")
    assert [p.step for p in series] == list(range(1, 11))
    assert series[-1].loss == 0.4


def test_nan_loss_is_strict_json_warned_once_and_a_streak_stops():
    import json

    from zlt.core.events import event_to_dict
    from zlt.run.divergence import NAN_PATIENCE

    stopped = []
    it, out = make(on_diverged=stopped.append)
    lines = [bar(1, loss=0.5), bar(2, loss=0.4)] + [bar(i).replace("5.000e-01", "nan") for i in range(3, 3 + NAN_PATIENCE + 2)]
    for line in lines:
        it.feed(line)
    progress = [e for e in out if isinstance(e, Progress)]
    assert progress[2].loss is None and progress[2].loss_nonfinite
    wire = json.dumps(event_to_dict(progress[2]), allow_nan=False)  # strict: no NaN token
    assert '"loss": null' in wire and '"loss_nonfinite": true' in wire
    diverged = [e for e in out if isinstance(e, Warning_) and e.code == "diverged"]
    assert len(diverged) == 2 and "step 3" in diverged[0].message and "last finite loss at step 2" in diverged[0].message
    assert stopped == [3] and it.facts.diverged_at == 3
    assert it.facts.last_loss == 0.4  # the summary keeps the last finite value


def test_a_single_nan_then_recovery_only_warns():
    stopped = []
    it, out = make(on_diverged=stopped.append)
    for line in [bar(1), bar(2, loss=float("inf")).replace("inf", "inf"), bar(3), bar(4, loss=float("nan")), bar(5)]:
        it.feed(line)
    assert not stopped
    assert len([e for e in out if isinstance(e, Warning_) and e.code == "diverged"]) == 2


def test_musubi_avr_loss_nan_is_not_finite():
    it, out = make(parse_musubi)
    it.feed("steps:  10%|█         | 3/30 [00:03<00:27, 1.00it/s, avr_loss=nan]")
    assert [e.loss_nonfinite for e in out if isinstance(e, Progress)] == [True]


def test_trainer_finished_events_are_ignored():
    from zlt.backends.lightning.parse import parse_lightning

    it, out = make(parse_lightning)
    it.feed('{"type": "finished", "status": "succeeded"}')
    assert out == []


def test_output_glued_to_a_bar_without_newline_is_split():
    it, out = make()
    it.feed(bar(10) + "Traceback (most recent call last):", "stderr")
    it.feed('  File "run.py", line 3, in <module>', "stderr")
    it.feed("ValueError: boom", "stderr")
    assert [e.step for e in out if isinstance(e, Progress)] == [10]
    err = [e for e in out if isinstance(e, Error)][-1]
    assert err.message == "ValueError: boom" and err.traceback[0] == "Traceback (most recent call last):"


def test_a_redraw_that_turns_a_step_nan_counts():
    from zlt.run.divergence import DivergenceWatch

    w = DivergenceWatch(limit=2)
    assert w.observe(Progress(13, 60, 0.3)) is None
    ev = Progress(13, 60, None, loss_nonfinite=True)
    assert w.observe(ev) == "warn" and w.observe(ev) is None  # the same redraw again says nothing new
    assert w.observe(Progress(14, 60, None, loss_nonfinite=True)) == "stop" and w.diverged_at == 13


def test_builtin_trainer_nonfinite_lines_count_too():
    """zlt/trainer/emit.py writes a nan loss as `"loss": null, "loss_nonfinite": true` (strict JSON)."""
    import json

    from zlt.backends.lightning.parse import parse_lightning
    from zlt.core.events import event_to_dict
    from zlt.run.divergence import NAN_PATIENCE

    stopped = []
    it, out = make(parse_lightning, on_diverged=stopped.append)
    for step in range(1, NAN_PATIENCE + 2):
        line = json.dumps(event_to_dict(Progress(step, 30, float("nan") if step > 1 else 0.5, 1e-4)), allow_nan=False)
        it.feed(line)
    assert stopped == [2]


def test_events_files_are_written_and_served_as_strict_json(tmp_path):
    import json

    from zlt.core.events import EventStream, read_events

    path = tmp_path / "events.jsonl"
    stream = EventStream("j1", path)
    stream.emit(Progress(3, 10, float("nan"), float("inf"), it_s=float("nan")))
    stream.close()
    text = path.read_text()
    assert "NaN" not in text and "Infinity" not in text
    d = json.loads(text)
    assert d["loss"] is None and d["loss_nonfinite"] is True and d["lr"] is None and d["it_s"] is None
    # a file from an older zlt (bare NaN) is served strict too
    path.write_text('{"seq": 1, "type": "progress", "step": 1, "total": 2, "loss": NaN, "lr": Infinity}\n')
    (ev,) = read_events(path)
    assert ev["loss"] is None and ev["loss_nonfinite"] is True and ev["lr"] is None
    json.dumps(ev, allow_nan=False)
