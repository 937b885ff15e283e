"""Runs left RUNNING by a process that died without a word (SIGKILL, out of memory, a lost shell).

Nothing can run after SIGKILL, so such a run would stay RUNNING in MLflow forever. Each run
records the process that owns it (host, pid and the pid's start time, so a reused pid is not
mistaken for the owner); when the next run starts in the same experiment on the same host,
runs whose owner is gone are marked FAILED. Rerunning the identical command still resumes such a
run from its checkpoint (trainer/resume.py), whatever its status.
"""

from __future__ import annotations

import os
import socket

HOST_TAG = "trainer.host"
OWNER_TAG = "trainer.process"  # "<pid>:<start time>"
STALE_TAG = "trainer.stale"


def _start_time(pid: int) -> str:
    """The process's start time in clock ticks since boot (Linux); "" where /proc is absent."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            # Field 22; the command name (field 2) may hold spaces, so count from its closing ")".
            return f.read().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return ""


def owner_tags() -> dict[str, str]:
    pid = os.getpid()
    return {HOST_TAG: socket.gethostname(), OWNER_TAG: f"{pid}:{_start_time(pid)}"}


def _owner_alive(owner: str) -> bool:
    pid, _, started = owner.partition(":")
    if not pid.isdigit():
        return True  # not ours to judge
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return not started or _start_time(int(pid)) == started


def close_stale_runs(client, experiment_id: str, keep: str | None = None) -> list[str]:
    """Mark FAILED every RUNNING run of this experiment whose owning process on this host is gone
    (but not `keep`, the run this process is about to resume)."""
    host = socket.gethostname()
    runs = client.search_runs([experiment_id], filter_string="attributes.status = 'RUNNING'", max_results=1000)
    closed = []
    for run in runs:
        tags = run.data.tags
        if run.info.run_id == keep or tags.get(HOST_TAG) != host or OWNER_TAG not in tags or _owner_alive(tags[OWNER_TAG]):
            continue
        client.set_tag(run.info.run_id, STALE_TAG,
                       f"process {tags[OWNER_TAG].partition(':')[0]} on {host} ended without recording an end")
        client.set_terminated(run.info.run_id, status="FAILED")
        closed.append(run.info.run_id)
    return closed
