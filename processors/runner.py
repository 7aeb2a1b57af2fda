"""Run inference with a deadline that really bounds the wait.

ONNX Runtime calls cannot be interrupted from Python, so each batch runs on one
dedicated thread and the caller waits at most ``timeout_s``. On timeout the call's
``RunOptions.terminate`` is set, which makes ONNX Runtime abandon the run at the next
operator boundary, freeing the thread for the next batch; the caller has already
moved on to fallbacks. Only one inference runs at a time, so a call that is still
terminating delays (within its own timeout) the next one instead of piling up.
"""

from __future__ import annotations

import concurrent.futures as cf
import os
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort

from processors.exceptions import InferenceError
from processors.model import OnnxModel


class InferenceTimeout(InferenceError):
    """The batch did not finish within the inference timeout."""

    retriable = True


class ChaosSwitch:
    """Fault injection for drills and tests: while ``path`` exists, its content decides.

    ``fail`` makes every inference raise; ``slow <ms>`` delays every inference. The file
    is looked at on each batch (one stat call), so drills start and stop at once.
    """

    def __init__(self, path: Path | None) -> None:
        self.path = path

    def apply(self) -> None:
        """Raise or sleep as the switch file says; nothing when it is absent."""
        if self.path is None or not os.path.exists(self.path):
            return
        try:
            words = self.path.read_text().split()
        except OSError:
            return
        if not words or words[0] == "fail":
            raise InferenceError(f"chaos: model failure injected by {self.path}")
        if words[0] == "slow" and len(words) > 1:
            time.sleep(float(words[1]) / 1000)


class TimedRunner:
    """One inference thread, a per-call timeout, and termination of abandoned runs."""

    def __init__(self, model: OnnxModel, timeout_s: float, chaos: ChaosSwitch | None = None) -> None:
        self.model = model
        self.timeout_s = timeout_s
        self.chaos = chaos or ChaosSwitch(None)
        self._pool = cf.ThreadPoolExecutor(max_workers=1, thread_name_prefix="inference")

    def _run(self, batch: np.ndarray, options: ort.RunOptions) -> np.ndarray:
        self.chaos.apply()
        return self.model.predict(batch, options)

    def predict(self, batch: np.ndarray) -> np.ndarray:
        """Scores, or InferenceError / InferenceTimeout within ``timeout_s``."""
        options = ort.RunOptions()
        future = self._pool.submit(self._run, batch, options)
        try:
            return future.result(timeout=self.timeout_s)
        except cf.TimeoutError:
            options.terminate = True
            future.cancel()  # not started yet (queued behind a terminating run): drop it
            raise InferenceTimeout(
                f"{self.model.name} v{self.model.version}: batch of {len(batch)} not done in "
                f"{self.timeout_s * 1000:.0f} ms") from None

    def close(self) -> None:
        """Stop the thread (after the current call)."""
        self._pool.shutdown(wait=False, cancel_futures=True)
