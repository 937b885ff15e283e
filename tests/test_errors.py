"""trainer/errors.py's table, row by row: how each failure ends a command. The CLI tests run the
rows through real commands (test_sweeps.py, test_faults.py, test_resume_safety.py, test_branches.py);
this pins the table itself, including the chain search that finds a refused write inside the
exceptions MLflow and TensorFlow wrap it in."""

from __future__ import annotations

import errno
import os

import pytest

from trainer import errors


def _wrapped(inner: BaseException) -> BaseException:
    try:
        try:
            raise inner
        except OSError as err:
            raise RuntimeError("the store could not commit") from err
    except RuntimeError as outer:
        return outer


@pytest.mark.parametrize(("err", "code", "bad_input", "goes_on"), [
    (errors.FolderInUse("pid 1 is running this same command"), 2, True, True),
    (errors.ConfigError("depth must be an integer >= 1. Received: depth=0"), 2, True, False),
    (errors.ResumeError("/ckpt", ValueError("damaged")), 2, True, False),
    (errors.DataUnavailable("mnist is not prepared"), 2, True, False),
    (errors.RegistryError("unknown model 'mpl'"), 2, True, False),
    (errors.NonFiniteLossError("the loss is nan at step 3"), 1, False, True),
    (RuntimeError("a bug"), 1, False, True),
])
def test_each_failure_has_one_ending(err, code, bad_input, goes_on):
    end = errors.ending(err, tracked=True)
    assert (end.code, end.bad_input, end.sweep_goes_on) == (code, bad_input, goes_on)
    if bad_input:
        assert end.line == str(err)  # bad input is the message itself, one line
    elif isinstance(err, RuntimeError):
        assert end.line is None  # a bug keeps its traceback


def test_a_diverged_run_says_it_is_recorded_failed_only_when_tracked():
    err = errors.NonFiniteLossError("the loss is nan at step 3")
    assert errors.ending(err, tracked=True).line == "training stopped: the loss is nan at step 3. The MLflow run is recorded FAILED."
    assert errors.ending(err, tracked=False).line == "training stopped: the loss is nan at step 3."


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS, errno.EACCES, errno.EPERM])
def test_a_write_the_disk_refused_is_found_inside_the_wrapping_exception(code):
    end = errors.ending(_wrapped(OSError(code, os.strerror(code), "/data/state.ckpt")), tracked=True)
    assert (end.code, end.bad_input, end.sweep_goes_on) == (1, False, True)
    assert end.line.startswith(f"could not write /data/state.ckpt: {os.strerror(code)}. The run is recorded FAILED")


def test_other_os_errors_keep_their_traceback():
    assert errors.ending(_wrapped(OSError(errno.ECONNREFUSED, "Connection refused")), tracked=True).line is None
