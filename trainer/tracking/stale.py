"""Runs left RUNNING by a process that died without a word (SIGKILL, out of memory, a lost shell):
each run names its process, and the next run in the experiment ends FAILED those provably gone."""

from __future__ import annotations

import os
import socket

HOST_TAG = "trainer.host"
MACHINE_TAG = "trainer.machine"  # "<boot id> <pid namespace>"
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


def _machine() -> str:
    """This kernel boot and pid namespace, within which a pid names one process; "" where /proc
    does not say (then no run is judged)."""
    try:
        with open("/proc/sys/kernel/random/boot_id") as f:
            boot = f.read().strip()
        namespace = os.readlink("/proc/self/ns/pid")
    except OSError:
        return ""
    return f"{boot} {namespace}" if boot and namespace else ""


def owner_tags() -> dict[str, str]:
    """The process that owns this run: the host name, the kernel's boot id and the pid namespace
    (two containers, or two machines, can share a host name; a pid means something only within one
    boot and one namespace), and the pid with its start time (so a reused pid is not mistaken for
    the owner)."""
    pid = os.getpid()
    return {HOST_TAG: socket.gethostname(), MACHINE_TAG: _machine(), OWNER_TAG: f"{pid}:{_start_time(pid)}"}


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
    """Mark FAILED every RUNNING run of this experiment whose owning process is provably gone: it ran
    on this host, in this boot and pid namespace, and is no longer there (but not `keep`, the run
    this process is about to resume). Nothing can run after SIGKILL, so nothing else would ever end
    such a run. Any other run, one recorded by an older trainer without the boot and namespace
    included, is not ours to judge and stays as it is. Rerunning the identical command still resumes
    such a run from its snapshot (trainer/run/resume.py), whatever its status."""
    host, machine = socket.gethostname(), _machine()
    if not machine:
        return []
    runs = client.search_runs([experiment_id], filter_string="attributes.status = 'RUNNING'", max_results=1000)
    closed = []
    for run in runs:
        tags = run.data.tags
        if (run.info.run_id == keep or tags.get(HOST_TAG) != host or tags.get(MACHINE_TAG) != machine
                or OWNER_TAG not in tags or _owner_alive(tags[OWNER_TAG])):
            continue
        client.set_tag(run.info.run_id, STALE_TAG,
                       f"process {tags[OWNER_TAG].partition(':')[0]} on {host} ended without recording an end")
        client.set_terminated(run.info.run_id, status="FAILED")
        closed.append(run.info.run_id)
    return closed
