"""Issue 41, part 4: --report NEW --baseline OLD: rows matched by setup, the speed ratio with its interval, the
verdict, the paired top-1 change, what differs in the environment, rows in one folder only, exit 4 on a regression
beyond --max_regression over the whole interval."""
from __future__ import annotations

import pytest

import main
from tests.conftest import unchanged
from tests.report import as_read
from tests.report.test_hostile_records import record, write
from utils.core.errors import cli_boundary
from utils.report.sections.baseline_tables import baseline_markdown, speed_change

baseline_markdown, speed_change = as_read(baseline_markdown), as_read(speed_change)


def timing(rate, low, high, **over):
    return record(role="timing", images_per_s=rate, speed_ci={"images_per_s": [low, high]}, **over)


def test_speed_change_combines_both_intervals_in_log_space():
    ratio, low, high = speed_change(timing(90.0, 85.5, 94.5), timing(100.0, 95.0, 105.0))
    # each interval spans log(1.105) = 0.100 in log space: together sqrt(2) x 0.100 / 2 = 0.0708 each way
    assert ratio == pytest.approx(0.9) and low == pytest.approx(0.8385, abs=1e-4) and high == pytest.approx(0.9660,
                                                                                                            abs=1e-4)
    assert speed_change(record(images_per_s=90.0), timing(100.0, 95.0, 105.0)) == (pytest.approx(0.9), None, None)


def test_the_baseline_table_matches_setups_and_flags_a_regression():
    old = [timing(100.0, 99.0, 101.0, env={"gpu": "H100", "torch": "2.10"}),
           timing(50.0, 49.5, 50.5, batch_size=8, env={"gpu": "H100", "torch": "2.10"}),
           timing(10.0, 9.9, 10.1, backend="onnxrt", env={"gpu": "H100"})]
    new = [timing(80.0, 79.0, 81.0, env={"gpu": "H100", "torch": "2.11"}),  # 20 % slower, all of the interval
           timing(50.5, 49.0, 52.0, batch_size=8, env={"gpu": "H100", "torch": "2.11"}),
           timing(30.0, 29.0, 31.0, precision="fp16", env={"gpu": "H100"})]
    doc, regressed = baseline_markdown(new, old, max_regression=5.0)
    text = str(doc)
    assert regressed == ["resnet18 Vanilla bs1"]
    assert "REGRESSED (more than 5 %)" in text and "no measurable difference" in text
    assert "torch 2.10 -> 2.11" in text
    assert "Here only: resnet18 Vanilla fp16 bs1." in text and "In the baseline only: resnet18 ONNX Runtime" in text
    assert baseline_markdown(new, old, max_regression=25.0)[1] == []  # 20 % is within a 25 % budget


def test_report_against_a_baseline_exits_4_on_a_regression(tmp_path, capsys):
    old, new = tmp_path / "old", tmp_path / "new"
    write(old, "a.json", timing(100.0, 99.0, 101.0))
    write(new, "a.json", timing(80.0, 79.0, 81.0))
    with unchanged(old / "records", new / "records"):
        assert cli_boundary(main.main, ["--report", str(new), "--baseline", str(old), "--quiet"]) == 0  # no budget
        assert cli_boundary(main.main, ["--report", str(new), "--baseline", str(old), "--max_regression", "5",
                                        "--quiet"]) == 4
    said = capsys.readouterr()
    assert f"regression: resnet18 Vanilla bs1 is more than 5 % slower than in {old}" in said.err
    assert "## Against the baseline" in said.out and "0.800x (0.787..0.813)" in said.out
    assert "Against the baseline" in (new / "report.html").read_text()
    assert cli_boundary(main.main, ["--report", str(new), "--baseline", str(new), "--max_regression", "5"]) == 0


@pytest.mark.parametrize("argv, said", [
    (["-v", "--synthetic", "4", "--baseline", "x"], "--baseline compares result folders: use it with --report"),
    (["--report", "R", "--max_regression", "5"], "--max_regression judges rows against a baseline: add --baseline"),
    (["--report", "R", "--baseline", "nowhere"], "--baseline nowhere is not a folder of results"),
    (["--report", "R", "--baseline", "R", "--max_regression", "100"], "--max_regression is a percentage"),
])
def test_baseline_refusals(argv, said, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "R").mkdir()
    assert cli_boundary(main.main, argv) == 2
    assert said in capsys.readouterr().err


def _repeated(rates):
    """A timing record of len(rates) whole runs (--repeats), each run's images/s given, figured by across_runs."""
    from utils.measure.measurement import across_runs

    got = across_runs([{"images_per_s": r, "timed_images": 100} for r in rates])
    return record(role="timing", precision="fp16", **{k: got[k] for k in ("images_per_s", "speed_ci", "repeats")})


def test_runs_that_disagree_make_a_weak_verdict_as_measured_on_an_h200():
    # the H200's ResNet-50 eager fp16 batch 1, the same study twice with --repeats 5
    # (docs/h200-confidence-repeats-2026-12-06/repeats.txt): A's runs fall in two groups, 122-124 and 166-172 img/s
    a = _repeated([124.1, 124.4, 122.2, 166.4, 171.8])
    b = _repeated([207.2, 208.4, 208.8, 210.3, 209.4])
    assert a["speed_ci"]["spread_percent"] == pytest.approx(40.59, abs=0.01)
    doc, regressed = baseline_markdown([b], [a], max_regression=5.0)
    text = str(doc)
    row = text.splitlines()[-1]
    assert regressed == [] and "| faster; unstable runs (up to 41 % apart) " in row
    assert "| 5 runs, unstable: 41 % apart / 5 runs " in row
    # its batch 64 fp32 rows, steady within 0.2 %: a 0.6 % difference is measured, and stable
    steady_a = _repeated([2594.6, 2595.5, 2598.7, 2597.8, 2598.7])
    steady_b = _repeated([2582.8, 2584.9, 2582.9, 2578.5, 2582.9])
    row = str(baseline_markdown([steady_b], [steady_a], max_regression=5.0)[0]).splitlines()[-1]
    assert "| 0.994x (0.993..0.996) | slower " in row and "unstable" not in row
