"""Fault injection for subprocess tests (on PYTHONPATH only there): makes a real
`python -m trainer` raise after a chosen epoch, so FAILED runs and sweeps that go on after a
failing job are tested through the real command line.

TRAINER_TEST_FAIL_AFTER_EPOCH=N  raise after epoch N's metrics were logged
TRAINER_TEST_FAIL_WHEN=depth=2   ...only in the job whose overrides contain this one (job=0: the first job)
TRAINER_TEST_SWALLOW_SIGNAL_AT=E:B  at the end of batch B of epoch E (from 0), print "swallowing the
    next signal", wait for one and swallow the exception its handler raises (as TensorFlow code can)
TRAINER_TEST_NO_SPACE_IN=trainer.run.resume:Resume.record_run
                                 that function fails as a full disk does (ENOSPC) instead of writing
"""

import errno
import importlib.abc
import importlib.util
import os
import sys
import time

_TARGET = "trainer.tracking.tracker"


def _patch(module) -> None:
    if os.environ.get("TRAINER_TEST_SWALLOW_SIGNAL_AT"):
        _swallow_a_signal(module)
    if os.environ.get("TRAINER_TEST_FAIL_AFTER_EPOCH"):
        _fail_after_epoch(module)


def _swallow_a_signal(module) -> None:
    at = tuple(int(n) for n in os.environ["TRAINER_TEST_SWALLOW_SIGNAL_AT"].split(":"))
    epoch_begin = module.EpochLogger.on_epoch_begin
    now = {}

    def on_epoch_begin(self, epoch, logs=None):
        now["epoch"] = epoch
        epoch_begin(self, epoch, logs)

    def on_train_batch_end(self, batch, logs=None):
        if (now.get("epoch"), batch) != at or now.get("done"):
            return
        now["done"] = True
        print("swallowing the next signal", flush=True)
        try:
            # The test's signal arrives in here. Short sleeps, not one long one: Python runs a handler in
            # the main thread at its next bytecode, so if the kernel hands the signal to one of
            # TensorFlow's threads, a single long sleep would hold the handler until it returned.
            for _ in range(1200):
                time.sleep(0.1)
        except KeyboardInterrupt:  # what the handlers raise, SIGTERM's Terminated included
            print("signal swallowed", flush=True)

    module.EpochLogger.on_epoch_begin = on_epoch_begin
    module.EpochLogger.on_train_batch_end = on_train_batch_end


def _fail_after_epoch(module) -> None:
    original = module.EpochLogger.on_epoch_end
    fail_after = int(os.environ["TRAINER_TEST_FAIL_AFTER_EPOCH"])
    when = os.environ.get("TRAINER_TEST_FAIL_WHEN")

    def on_epoch_end(self, epoch, logs=None):
        original(self, epoch, logs)
        if epoch >= fail_after and (when is None or _in_job_overrides(when)):
            raise RuntimeError(f"injected failure after epoch {epoch}")

    module.EpochLogger.on_epoch_end = on_epoch_end


def _no_space(module) -> None:
    owner, _, name = os.environ["TRAINER_TEST_NO_SPACE_IN"].partition(":")[2].rpartition(".")
    holder = getattr(module, owner) if owner else module

    def full_disk(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    setattr(holder, name, full_disk)


class _PatchOnImport(importlib.abc.MetaPathFinder):
    """Patches a module (trainer.tracking.tracker unless named) right after it is first executed, whoever imports it."""

    def __init__(self, target: str = _TARGET, patch=None):
        self.target, self.patch = target, patch or _patch

    def find_spec(self, name, path, target=None):
        if name != self.target:
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(name)
        execute = spec.loader.exec_module

        def exec_module(module):
            execute(module)
            self.patch(module)

        spec.loader.exec_module = exec_module
        return spec


def _in_job_overrides(when: str) -> bool:
    """`depth=2`: the job with that override; `job=0`: the sweep's first job."""
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return False
    if when.startswith("job="):
        return str(HydraConfig.get().job.num) == when[len("job="):]
    return when in HydraConfig.get().overrides.task


if os.environ.get("TRAINER_TEST_FAIL_AFTER_EPOCH") or os.environ.get("TRAINER_TEST_SWALLOW_SIGNAL_AT"):
    sys.meta_path.insert(0, _PatchOnImport())
if os.environ.get("TRAINER_TEST_NO_SPACE_IN"):
    sys.meta_path.insert(0, _PatchOnImport(os.environ["TRAINER_TEST_NO_SPACE_IN"].partition(":")[0], _no_space))
