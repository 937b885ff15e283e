"""The resume folder through the real CLI: trainer deletes only what it wrote, refuses (in one line,
before TensorFlow loads) a resume.dir it could not safely empty or that belongs to another config,
ends a run FAILED when recording it fails, judges a stale run only when its owner is provably gone,
and refuses a malformed checkpoint without touching it."""

from __future__ import annotations

import concurrent.futures
import json
import os
import socket
import subprocess
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from tests.conftest import REPO, tracking_uri, without_tensorflow
from trainer.run import snapshot
from trainer.tracking import stale

FAULTS = str(REPO / "tests" / "faults")
RUN = ("model=mlp", "width=8", "epochs=2", "resume.every_seconds=0", "callbacks.progress=epoch")


def _faults(**variables: str) -> dict:
    return {"PYTHONPATH": os.pathsep.join(filter(None, [FAULTS, os.environ.get("PYTHONPATH")])), **variables}


def _line(result: subprocess.CompletedProcess, code: int = 2) -> str:
    """The one line a refused command printed (TensorFlow's start-up log aside)."""
    assert result.returncode == code, result.stderr[-3000:]
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    lines = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1, result.stderr[-3000:]
    return lines[0]


def _snapshot(folder: Path) -> dict:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def test_a_resume_dir_trainer_could_not_safely_empty_is_refused_before_tensorflow(cli, tmp_path):
    mine = tmp_path / "my_results"
    (mine / "notes").mkdir(parents=True)
    (mine / "keep.txt").write_text("the user's")
    theirs = tmp_path / "their_config"
    theirs.mkdir()
    (theirs / "run.json").write_text('{"lr": 0.1}')  # a run.json of the user's own, not a resume record
    earlier = tmp_path / "earlier"
    earlier.mkdir()
    (earlier / "run.json").write_text('{"run_id": "0123abcd"}')  # an earlier trainer's record: names no config
    a_file = tmp_path / "a_file"
    a_file.write_text("not a folder")
    cases = {
        str(mine): f"{mine} holds other files (keep.txt, notes), which a finished run must not delete",
        str(theirs): f"{theirs} holds other files (run.json), which a finished run must not delete",
        str(earlier): "(UnnamedRecord: run.json does not name the config it belongs to",
        ".": "not the working folder or a folder that holds it",
        "outputs": "not the outputs folder (paths.output_dir) or a folder that holds it",
        str(tmp_path.parent): "not the working folder or a folder that holds it",
        "/": "not a mount point (/)",
        str(a_file): f"resume.dir must be a folder, or a path where one can be created; {a_file} is a file",
        str(a_file / "sub"): f"{a_file} is a file",
        # Unwritable even for root; tracking off, so no store is made whichever check answers.
        "/proc/self/checkpoints": "resume.dir must be a folder this user can write to",
    }
    env = without_tensorflow(tmp_path)

    def refused(value):
        tracking = ["tracking.enabled=false"] if value.startswith("/proc/") else []
        return value, cli(f"resume.dir={value}", "epochs=1", *tracking, extra_env=env)

    with concurrent.futures.ThreadPoolExecutor(max_workers=4) as pool:
        for value, result in pool.map(refused, cases):
            line = _line(result)
            assert cases[value] in line and line.endswith(f"Received: resume.dir={value}"), line
    assert sorted(p.name for p in mine.iterdir()) == ["keep.txt", "notes"]  # no lock, nothing added
    assert (mine / "keep.txt").read_text() == "the user's" and (theirs / "run.json").read_text() == '{"lr": 0.1}'
    assert a_file.read_text() == "not a folder" and (earlier / "run.json").read_text() == '{"run_id": "0123abcd"}'
    assert not (tmp_path / "outputs").exists()  # nothing created: no store, no checkpoint folder


def test_a_users_folder_is_used_emptied_of_only_trainers_files_and_never_given_to_another_config(cli, tmp_path):
    mine = tmp_path / "mine"
    mine.mkdir()  # the user's, empty
    run = (*RUN, f"resume.dir={mine}")

    # 1. A run that fails after its first checkpoint leaves the record and the checkpoint.
    failed = cli(*run, extra_env=_faults(TRAINER_TEST_FAIL_AFTER_EPOCH="1"))
    assert failed.returncode == 1, failed.stderr[-3000:]
    assert sorted(p.name for p in mine.iterdir()) == ["lock", "run.json", "state.ckpt"]
    record = json.loads((mine / "run.json").read_text())
    client = MlflowClient(tracking_uri(tmp_path))
    assert client.get_run(record["run_id"]).info.status == "FAILED"
    left = _snapshot(mine)

    # 2. Another config pointed at that folder is refused before TensorFlow, and touches nothing.
    other = cli(*run, "width=16", extra_env=without_tensorflow(tmp_path))
    line = _line(other)
    assert line.startswith(f"error: resume.dir holds the resume checkpoint of another config (resume.identity"
                           f" {record['identity']}, this run's is ")
    assert line.endswith(f"Received: resume.dir={mine}")
    assert _snapshot(mine) == left

    # 3. A checkpoint whose header is not JSON is the resume error, and is kept as it is.
    good = (mine / snapshot.FILE).read_bytes()
    malformed = snapshot._MAGIC + (9).to_bytes(8, "little") + b"{not json" + good[-100:]
    (mine / snapshot.FILE).write_bytes(malformed)
    refused = cli(*run)
    line = _line(refused)
    assert line.startswith(f"error: cannot resume from the checkpoint in {mine} (ValueError: the header is malformed")
    assert (mine / snapshot.FILE).read_bytes() == malformed
    assert client.get_run(record["run_id"]).info.status == "FAILED"

    # 4. Repaired, with a file of the user's added, and stale-looking runs in the store: the same
    # command resumes its run to FINISHED; afterwards only the user's file is left.
    (mine / snapshot.FILE).write_bytes(good)
    (mine / "keep.txt").write_text("the user's")
    gone = subprocess.Popen(["true"])
    gone.wait()
    experiment = client.get_experiment_by_name("trainer").experiment_id
    owner = {stale.HOST_TAG: socket.gethostname(), stale.OWNER_TAG: f"{gone.pid}:1"}
    here = client.create_run(experiment, tags={**owner, stale.MACHINE_TAG: stale._machine()}).info.run_id
    boot = stale._machine().split()[0]
    other_container = client.create_run(experiment, tags={**owner, stale.MACHINE_TAG: f"{boot} pid:[1]"}).info.run_id
    older = client.create_run(experiment, tags=owner).info.run_id  # recorded before the machine tag existed

    resumed = cli(*run)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "Epoch 1/2" not in resumed.stdout and "Epoch 2/2" in resumed.stdout
    assert client.get_run(record["run_id"]).info.status == "FINISHED"
    assert sorted(p.name for p in mine.iterdir()) == ["keep.txt"]
    assert client.get_run(here).info.status == "FAILED"
    assert client.get_run(other_container).info.status == "RUNNING"  # not provably ours to judge
    assert client.get_run(older).info.status == "RUNNING"


@pytest.mark.parametrize("full_disk_in", [
    "trainer.run.resume:Resume.record_run",             # the resume record, right after the run is created
    "mlflow.tracking.client:MlflowClient.log_batch",  # the new run's params
])
def test_a_run_that_cannot_record_itself_ends_failed(cli, tmp_path, full_disk_in):
    result = cli(*RUN, extra_env=_faults(TRAINER_TEST_NO_SPACE_IN=full_disk_in))
    line = _line(result, code=1)
    assert line.startswith("error: could not write: No space left on device. The run is recorded FAILED")
    client = MlflowClient(tracking_uri(tmp_path))
    (run,) = client.search_runs([client.get_experiment_by_name("trainer").experiment_id])
    assert run.info.status == "FAILED"
    assert "traceback.txt" in [a.path for a in client.list_artifacts(run.info.run_id)]
    assert not list((tmp_path / "outputs" / "checkpoints").iterdir())  # nothing recorded, nothing left
