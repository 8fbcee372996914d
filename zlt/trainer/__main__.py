"""`python -m zlt.trainer CONFIG`: run the built-in trainer; JSON events on stdout, human text on stderr.

Exit 0: finished, or stopped on request (SIGINT/SIGTERM/stop_after_step) with a resume state saved.
Exit 1: failed (an `error` or `oom` event says why).
"""

from __future__ import annotations

import logging
import signal
import sys
import traceback

from zlt.core.errors import ZltError
from zlt.trainer.config import load_trainer_config
from zlt.trainer.emit import EventWriter, take_stdout
from zlt.trainer.loop import StopFlag, Trainer


def _install_signals(stop) -> None:
    """First SIGINT/SIGTERM during training: finish the step, save, exit 0. Before training, or a second
    signal: stop at once."""

    def handler(signum, _frame):
        name = signal.Signals(signum).name
        if stop.armed and not stop:
            stop.set(name)  # no I/O here: the main thread may be half-way through writing an event
            return
        raise KeyboardInterrupt(name)

    signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGTERM, handler)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1 or args[0] in ("-h", "--help"):
        sys.stderr.write("usage: python -m zlt.trainer TRAINER_JSON\n")
        return 0 if args in (["-h"], ["--help"]) else 1


    events = EventWriter(take_stdout())
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s")
    try:
        cfg = load_trainer_config(args[0])
        events.interval_s = cfg.progress_interval_s
        stop = StopFlag()
        _install_signals(stop)
        trainer = Trainer(cfg, events, stop)
        trainer.setup()
        stop.armed = True
        outcome = trainer.run()
        sys.stderr.write(f"[zlt.trainer] {outcome} at step {trainer.step}/{cfg.training.max_steps}; output in {trainer.out}\n")
        return 0
    except KeyboardInterrupt as e:
        events.warning(f"interrupted ({e or 'SIGINT'}) before a checkpoint could be saved")
        return 0
    except ZltError as e:
        msg = e.message + (f" (hint: {e.hint})" if e.hint else "")
        sys.stderr.write(f"[zlt.trainer] error: {msg}\n")
        events.error(msg)
        return 1
    except Exception as e:
        tb = traceback.format_exc()
        sys.stderr.write(tb)
        if _is_oom(e):
            events.oom(f"{type(e).__name__}: {e}".strip())
        else:
            events.error(f"{type(e).__name__}: {e}", tb.rstrip().splitlines()[-20:])
        return 1


def _is_oom(e: BaseException) -> bool:
    try:
        import torch

        return isinstance(e, torch.OutOfMemoryError)
    except ImportError:
        return False


if __name__ == "__main__":
    sys.exit(main())
