"""Every exception a user is meant to read, and the one table of how each ends a command: its exit
code, the line printed, and whether a sweep goes on past the job. Free of TensorFlow, so the
command line reports any of them without importing the code that raises them."""

from __future__ import annotations

import errno
from dataclasses import dataclass


class ConfigError(ValueError):
    """Bad user input. Its message names the key, the value received and what is allowed."""


class DataUnavailable(ConfigError):
    """The dataset is not prepared in the data dir and cannot be downloaded now."""


class FolderInUse(ConfigError):
    """The same command is running in another process, which holds its resume folder."""


class ResumeError(ConfigError):
    """A resume record or snapshot exists but cannot be used; it is left untouched for the user to inspect."""

    def __init__(self, directory: str, cause):
        super().__init__(
            f"cannot resume from the checkpoint in {directory} ({type(cause).__name__}: {str(cause).splitlines()[0]}"
            f"). It was left untouched: delete it to start over, or set resume.enabled=false or another resume.dir."
            f" Received: resume.dir={directory}"
        )


class RegistryError(ConfigError):
    """An unknown model, variant or knob. The message lists what exists."""


class NonFiniteLossError(FloatingPointError):
    """Training produced a NaN or infinite loss; the message names the step."""


class ExportMismatch(RuntimeError):
    """An exported file does not compute what the Keras model computes, within the tolerance
    (trainer/use/export.py); the message names the format and the difference."""


# What the disk refused: full, over quota, over the file-size limit, read-only, not permitted.
_STORAGE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS, errno.EACCES, errno.EPERM}


@dataclass(frozen=True)
class Ending:
    code: int                # the exit code when the failure ends the command
    line: str | None         # the one line printed; None: the traceback (the MLflow run holds it too)
    bad_input: bool          # the command line is wrong: it ends a sweep too, with this line
    sweep_goes_on: bool      # with sweep.continue_on_failure=true, the job fails and the sweep goes on


def ending(err: BaseException, *, tracked: bool) -> Ending:
    """How `err`, raised by a run, ends the command. The table, in the order it is read:

    | raised                          | exit | single run prints          | sweep (continue_on_failure) |
    | FolderInUse                     | 2    | its message                | the job fails, sweep goes on |
    | ConfigError, RegistryError      | 2    | its message                | stops the sweep, exit 2      |
    | OSError the disk refused        | 1    | could not write ...        | the job fails, sweep goes on |
    | NonFiniteLossError              | 1    | training stopped: ...      | the job fails, sweep goes on |
    | ExportMismatch                  | 1    | export check failed: ...   | the job fails, sweep goes on |
    | anything else                   | 1    | the traceback              | the job fails, sweep goes on |

    FolderInUse: two identical jobs of one parallel sweep, the second refused by the first's
    lock, is a job the sweep can go on without, not bad input that stops it."""
    if isinstance(err, FolderInUse):
        return Ending(2, str(err), bad_input=True, sweep_goes_on=True)
    if isinstance(err, ConfigError):  # RegistryError too
        return Ending(2, str(err), bad_input=True, sweep_goes_on=False)
    storage = _storage_line(err)
    if storage:
        return Ending(1, storage, bad_input=False, sweep_goes_on=True)
    if isinstance(err, NonFiniteLossError):
        # Diverged training is an outcome to read, not a crash to debug: one line, run FAILED.
        recorded = " The MLflow run is recorded FAILED." if tracked else ""
        return Ending(1, f"training stopped: {err}.{recorded}", bad_input=False, sweep_goes_on=True)
    if isinstance(err, ExportMismatch):
        recorded = " The MLflow run is recorded FAILED." if tracked else ""
        return Ending(1, f"export check failed: {err}.{recorded}", bad_input=False, sweep_goes_on=True)
    return Ending(1, None, bad_input=False, sweep_goes_on=True)


def _storage_line(err: BaseException) -> str | None:
    """One line for a write the disk refused, found anywhere in the exception's chain (TensorFlow
    and MLflow wrap the OSError), or None."""
    seen = set()
    while err is not None and id(err) not in seen:
        seen.add(id(err))
        if isinstance(err, OSError) and err.errno in _STORAGE_ERRNOS:
            where = f" {err.filename}" if err.filename else ""
            return (f"could not write{where}: {err.strerror or err}. The run is recorded FAILED and the last"
                    " checkpoint is kept: free space or fix permissions, then rerun the same command to resume")
        err = err.__cause__ or err.__context__
    return None
