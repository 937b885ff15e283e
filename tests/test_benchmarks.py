"""The benchmark harness keeps working: `python -m benchmarks --quick` runs every benchmark at a
tiny size and writes results of the documented shape. Structure only, never a timing."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.__main__ import BENCHMARKS
from benchmarks.probe import Clock
from tests.conftest import REPO

ROW_KEYS = {"case", "measure", "unit", "a", "b", "ratio", "target", "kind", "met", "a_samples", "b_samples",
            "pair_ratios"}


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    out = tmp_path_factory.mktemp("benchmarks")
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    proc = subprocess.run([sys.executable, "-m", "benchmarks", "--quick", "--out", str(out)], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=1500)  # every benchmark, on a shared 2-core machine
    assert proc.returncode == 0, proc.stderr[-4000:]
    return out, proc


def test_quick_run_writes_every_section_with_rows_of_one_shape(quick):
    out, _ = quick
    results = json.loads((out / "results.json").read_text())
    assert results["quick"] is True
    assert {"cpu", "logical_cores", "versions", "tensorflow_build"} <= set(results["machine"])
    assert [s["name"] for s in results["sections"]] == list(BENCHMARKS)
    for section in results["sections"]:
        assert not section.get("error"), (section["name"], section["error"])
        assert section["rows"], section["name"]
        for row in section["rows"]:
            assert set(row) >= ROW_KEYS, section["name"]
            assert row["a_samples"] and all(isinstance(v, (int, float)) for v in row["a_samples"]), row
            assert row["a"] is not None and math.isfinite(row["a"]), row
            if row["b_samples"]:
                assert row["ratio"] is not None and math.isfinite(row["ratio"]), row
                # Every ratio is of two positive quantities except scaling's memory the data adds, a
                # difference of two processes' peaks that can fall below 0 at the quick run's tiny sizes.
                assert row["ratio"] > 0 or row["measure"] == "memory the data adds vs bytes cached", row
            if row["target"] is not None:
                assert isinstance(row["met"], bool), row


def test_every_target_the_issue_sets_is_in_the_results(quick):
    out, _ = quick
    results = json.loads((out / "results.json").read_text())
    targets = {(s["name"], row["measure"]): row["target"]
               for s in results["sections"] for row in s["rows"] if row["target"] is not None}
    assert targets[("overhead", "steady-state epoch time")] == 0.90
    assert targets[("loops", "steady-state step time")] == 1.05
    assert targets[("tracking", "steady-state epoch time")] == 1.03
    assert targets[("pipeline", "steady-state step time")] == 1.00
    assert targets[("levers", "steady-state epoch time")] == 1.00
    assert targets[("startup", "time to reject a bad config")] == 2.0
    assert targets[("compute", "FLOP/s")] == 0.6
    assert targets[("predict", "images per second")] == 0.9
    assert targets[("scaling", "steady-state epoch time per example")] == 0.10  # within 0.90-1.10
    assert targets[("scaling", "memory the data adds vs bytes cached")] == 4  # 1 / data.cache=auto's RAM share
    assert targets[("pruning", "epochs trained")] == 0.6  # issue 18: at most 0.6 of the epochs,
    assert targets[("pruning", "best value lost to pruning")] == 0.005  # for a best value within 0.005
    measures = {row["measure"] for s in results["sections"] if s["name"] == "variants" for row in s["rows"]}
    assert {"training step time", "build time", "save time (.keras)", "load time (.keras)", ".keras file size",
            "parameters"} <= measures


def test_quick_run_draws_the_scaling_figure(quick):
    out, _ = quick
    results = json.loads((out / "results.json").read_text())
    (scaling,) = [s for s in results["sections"] if s["name"] == "scaling"]
    assert [Path(f) for f in scaling["figures"]] == [out / "scaling.png"]
    assert (out / "scaling.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_markdown_table_names_every_section_and_the_machine(quick):
    out, proc = quick
    results = json.loads((out / "results.json").read_text())
    markdown = (out / "results.md").read_text()
    assert results["machine"]["cpu"] in markdown and "TensorFlow" in markdown
    for section in results["sections"]:
        assert f"### {section['title']}" in markdown
    assert "| case | measure |" in markdown
    assert markdown.strip() in proc.stdout


def test_the_default_run_is_held_to_its_whole_process_targets(quick):
    out, _ = quick
    results = json.loads((out / "results.json").read_text())
    rows = {(s["name"], row["measure"]): row for s in results["sections"] for row in s["rows"]}
    assert rows[("overhead", "whole-process wall time")]["target"] == 1.10
    for name, measure in (("startup", "time to the first training step"), ("overhead", "time after the last epoch")):
        extra = rows[(name, f"{measure}, more than plain Keras")]
        assert extra["target"] == 0.5 and extra["unit"] == "s"
        assert extra["a"] == pytest.approx(rows[(name, measure)]["a"] - rows[(name, measure)]["b"])
    assert rows[("overhead", "whole-process wall time")]["case"].startswith("default run")


def test_clock_turns_callback_events_into_epochs():
    clock = Clock()
    events = [("train_begin", 0, 0.0), ("epoch_begin", 0, 1.0), ("batch_begin", 0, 1.0), ("batch_end", 0, 3.0),
              ("batch_begin", 1, 3.0), ("batch_end", 1, 4.0), ("epoch_end", 0, 5.0), ("epoch_begin", 1, 5.0),
              ("batch_begin", 0, 5.5), ("batch_end", 0, 6.0), ("batch_begin", 1, 6.0), ("batch_end", 1, 6.5),
              ("epoch_end", 1, 7.0), ("epoch_begin", 2, 9.0), ("batch_begin", 0, 9.0), ("batch_end", 0, 9.5),
              ("epoch_end", 2, 10.0)]  # epoch 2 began 2 s late, as after a wait for its turn in lockstep
    clock.events = [(kind, index, t, t / 2) for kind, index, t in events]  # CPU time runs at half speed
    first, second, third = clock.epochs()
    assert (first["seconds"], first["train_seconds"], first["steps"], first["step_durations"]) == (4.0, 3.0, 2,
                                                                                                 [2.0, 1.0])
    assert (second["seconds"], second["train_seconds"], second["step_seconds"]) == (2.0, 1.5, 0.75)
    assert (second["cpu_seconds"], second["train_cpu_seconds"], second["step_cpu_seconds"]) == (1.0, 0.75, 0.375)
    assert (third["seconds"], third["span_seconds"], third["span_cpu_seconds"]) == (3.0, 1.0, 0.5)


def test_lockstep_baton_passes_turns_and_runs_free_when_a_process_is_gone(tmp_path, monkeypatch):
    from benchmarks.probe import Baton

    first, second = tmp_path / "0", tmp_path / "1"
    for fifo in (first, second):
        os.mkfifo(fifo)
    a, b = Baton(f"{first}:{second}"), Baton(f"{second}:{first}")
    os.write(os.open(first, os.O_RDWR), b".")  # the first process has the first turn
    monkeypatch.setattr(Baton, "TIMEOUT_S", 0.05)
    b.take()
    assert b.broken  # not its turn: after the timeout it runs free
    b.broken = False
    a.take()
    a.give()
    b.take()
    assert not a.broken and not b.broken
    a.take()  # b has not passed the turn back
    assert a.broken


class _ScriptedClock:
    """`time` for Baton.settle: wall time moves only in sleeps; the process uses `busy` CPU seconds
    in each of its first `busy_windows` sleeps, then none."""

    def __init__(self, busy: float, busy_windows: float):
        self.wall, self.cpu, self.busy, self.busy_windows = 100.0, 5.0, busy, busy_windows

    def time(self):
        return self.wall

    def process_time(self):
        return self.cpu

    def sleep(self, seconds):
        self.wall += seconds
        if self.busy_windows > 0:
            self.busy_windows -= 1
            self.cpu += self.busy


def test_settle_returns_when_the_process_went_idle_or_at_its_deadline(monkeypatch):
    from benchmarks import probe

    clock = _ScriptedClock(busy=0.001, busy_windows=3)  # a window of 1 ms: busy, busy, busy, idle
    monkeypatch.setattr(probe, "time", clock)
    assert probe.Baton.settle(window=0.001, idle_cpu=0.0002) == pytest.approx((100.003, 5.003))
    clock = _ScriptedClock(busy=0.001, busy_windows=math.inf)  # never idle: gives up after `longest`
    monkeypatch.setattr(probe, "time", clock)
    wall, cpu = probe.Baton.settle(window=0.001, idle_cpu=0.0002, longest=0.01)
    assert 100.01 < wall < 100.0125 and cpu == pytest.approx(5.0 + (wall - 100.0))


def test_flops_are_counted_from_the_layers():
    import keras

    from benchmarks.flops import training_flops_per_example

    inputs = keras.Input((8, 8, 1))
    x = keras.layers.Conv2D(4, 3, padding="same")(inputs)         # 8*8 positions * 3*3*1*4 MACs = 2304
    x = keras.layers.Flatten()(x)
    outputs = keras.layers.Dense(10)(x)                            # 256*10 MACs = 2560
    model = keras.Model(inputs, outputs)
    # forward 2*MACs, weight gradients 2*MACs, input gradients 2*MACs except for the first layer
    assert training_flops_per_example(model) == 2 * (2304 + 2560) * 2 + 2 * 2560


def test_a_ratio_shows_the_spread_of_its_back_to_back_pairs():
    from benchmarks import report
    from benchmarks.results import compare, section

    row = compare("mlp", "steady-state epoch time", "s", [1.0, 2.2, 3.0], [1.0, 2.0, 2.0], target=1.03)
    assert row["ratio"] == 1.1 and not row["met"]  # the medians decide the target, not the pairs
    assert row["pair_ratios"] == pytest.approx([1.0, 1.1, 1.5])
    assert "| 1.100 (1.00–1.50) | ≤ 1.03: missed |" in report.section_markdown(section("s", "S", "A", "B", [row]))
    assert compare("mlp", "parameters", "count", [5], [5])["pair_ratios"] == []  # one pair: no spread


def test_a_band_target_is_met_on_either_side_of_one_and_shown_as_a_range():
    from benchmarks import report
    from benchmarks.results import compare, section

    rows = [compare("n", "per example", "s", [a], [1.0], target=0.1, kind="band") for a in (0.89, 0.95, 1.08, 1.12)]
    assert [row["met"] for row in rows] == [False, True, True, False]
    assert "| 0.9–1.1: met |" in report.section_markdown(section("s", "S", "A", "B", rows[1:2]))


def test_update_docs_rewrites_only_the_blocks_of_the_sections_that_ran_and_copies_their_figures(tmp_path,
                                                                                                 monkeypatch):
    from benchmarks import report
    from benchmarks.results import section, value

    docs, out = tmp_path / "docs", tmp_path / "out"
    docs.mkdir()
    out.mkdir()
    (out / "scaling.png").write_bytes(b"png")
    page = ("a\n<!-- benchmarks:performance -->\nold tables\n<!-- benchmarks:end -->\nb\n"
            "<!-- benchmarks:scaling -->\nold scaling\n<!-- benchmarks:end -->\nc\n")
    (docs / "performance.md").write_text(page)
    (docs / "variants.md").write_text("<!-- benchmarks:variants -->\nold variants\n<!-- benchmarks:end -->\n")
    scaling = section("scaling", "Cost as work grows", "measured", "reference",
                      [value("mlp", "peak resident memory", "memory", [2**30])])
    scaling["figures"] = [str(out / "scaling.png")]
    results = {"started": "now", "command": "python -m benchmarks --only scaling", "seconds": 1.0,
               "load_average_end": None, "sections": [scaling],
               "machine": {"git_commit": "abc", "load_average": None, "cpu": "cpu"}}
    monkeypatch.setattr(report, "one_line", lambda machine: machine["cpu"])  # the header's machine line
    changed = report.update_docs(results, docs)
    text = (docs / "performance.md").read_text()
    assert "old tables" in text and "old scaling" not in text and "| mlp | peak resident memory | 1,024 MiB |" in text
    assert "old variants" in (docs / "variants.md").read_text()  # variants did not run: its block is left alone
    assert (docs / "scaling.png").read_bytes() == b"png"
    assert set(changed) == {docs / "performance.md", docs / "scaling.png"}
