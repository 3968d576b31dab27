"""Progress for long stages: a Keras callback (steps, rate, ETA) and a heartbeat for jobs
that report no steps (Beam). On a terminal one line is redrawn in place; otherwise a line is
printed every `every` seconds, so logs stay short."""
from __future__ import annotations

import sys
import threading
import time
from typing import Callable, Optional

import tensorflow as tf


def _eta(seconds: float) -> str:
    seconds = int(max(0, seconds))
    return f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"


class _Line:
    """Writes status lines: redrawn on a terminal, throttled otherwise."""

    def __init__(self, label: str, every: float, stream=None):
        self.label, self.every = label, every
        self.stream = stream or sys.stderr
        self.tty = hasattr(self.stream, "isatty") and self.stream.isatty()
        self._last = 0.0

    def show(self, text: str, force: bool = False) -> None:
        now = time.time()
        if self.tty:
            self.stream.write(f"\r[{self.label}] {text}\033[K")
            self.stream.flush()
        elif force or now - self._last >= self.every:
            self.stream.write(f"[{self.label}] {text}\n")
            self.stream.flush()
            self._last = now

    def close(self) -> None:
        if self.tty:
            self.stream.write("\n")
            self.stream.flush()


class ProgressBar(tf.keras.callbacks.Callback):
    """Steps done / total, steps per second, examples per second and ETA during `fit`.

    Args:
        label: stage name shown in front of the line.
        batch_size: examples per step (for the examples/s rate).
        every: seconds between printed lines when not on a terminal.
        steps_per_epoch: the steps of one epoch when Keras cannot know them (datasets of
            unknown length), e.g. from the dataset's example counts.
    """

    def __init__(self, label: str, batch_size: int = 0, every: float = 10.0, stream=None,
                 steps_per_epoch: Optional[int] = None):
        super().__init__()
        self.line = _Line(label, every, stream)
        self.batch_size, self.steps_hint = batch_size, steps_per_epoch

    def on_train_begin(self, logs=None):
        self.t0, self.done = time.time(), 0
        self.epochs = self.params.get("epochs") or 1
        self.per_epoch = self.params.get("steps") or self.steps_hint
        self.epoch = 0

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        self.done += 1
        first = self.done == 1
        elapsed = max(time.time() - self.t0, 1e-9)
        rate = self.done / elapsed
        total = self.per_epoch * self.epochs if self.per_epoch else None
        text = f"step {self.done}" + (f"/{total}" if total else "")
        text += f", epoch {self.epoch + 1}/{self.epochs}, {rate:.1f} steps/s"
        if self.batch_size:
            text += f" ({rate * self.batch_size:,.0f} examples/s)"
        if total and not first:  # the first step includes tracing: no ETA from it
            text += f", ETA {_eta((total - self.done) / rate)}"
        if logs and "loss" in logs:
            text += f", loss {float(logs['loss']):.4f}"
        self.line.show(text, force=first)

    def on_epoch_end(self, epoch, logs=None):
        if not self.per_epoch:
            self.per_epoch = self.done // (epoch + 1)  # known after the first epoch

    def on_train_end(self, logs=None):
        self.line.show(f"{self.done} steps in {time.time() - self.t0:.1f} s", force=True)
        self.line.close()


class Heartbeat:
    """Prints elapsed time (and `status()` if given) while a blocking job runs.

    Usage: `with Heartbeat("preprocess", status=lambda: "..."): run()`.
    """

    def __init__(self, label: str, status: Optional[Callable[[], str]] = None,
                 every: float = 10.0, stream=None):
        self.line = _Line(label, every, stream)
        self.status = status
        self._stop = threading.Event()

    def _run(self):
        while not self._stop.wait(1.0 if self.line.tty else self.line.every):
            extra = f", {self.status()}" if self.status else ""
            self.line.show(f"running {time.time() - self.t0:.0f} s{extra}", force=True)

    def __enter__(self):
        self.t0 = time.time()
        extra = f": {self.status()}" if self.status else ""
        self.line.show(f"started{extra}", force=True)
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        if self.line.tty:
            self.line.close()
        return False
