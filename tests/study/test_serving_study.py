"""--scenario in a study: one job per scenario beside (or instead of) the timing jobs, each a record whose key names
LoadGen's settings: a rerun finds them done, another setting is another job."""
from __future__ import annotations

import json

import pytest

import main
from utils.core.errors import cli_boundary
from utils.study.plan import ACCURACY, SCENARIO, TIMING, jobs_for

pytest.importorskip("mlperf_loadgen")


def test_scenarios_are_jobs_of_the_plan():
    from utils.measure.serving import ServeOptions

    off, srv = ServeOptions("offline", max_batch=8), ServeOptions("server", target_qps=10.0)
    assert [(j.role, j.batch_size) for j in jobs_for([], True, [off, srv])] == [(SCENARIO, 8), (SCENARIO, 32)]
    roles = [(j.role, j.batch_size) for j in jobs_for([1, 4], True, [off])]
    assert roles == [(ACCURACY, 4), (TIMING, 1), (TIMING, 4), (SCENARIO, 8)]


def _records(folder):
    return [json.loads(p.read_text()) for p in sorted((folder / "records").rglob("*.json"))]


@pytest.mark.slow
def test_a_study_of_scenarios_records_and_resumes(tmp_path, demo_data, capsys):
    out = tmp_path / "o"
    argv = ["-v", "--network", "efficientnet_lite0", "--pretrained", "--dataset", str(demo_data), "--quiet",
            "--scenario", "offline", "singlestream", "--duration", "0.3", "--limit", "8", "--max_batch", "4",
            "--output", str(out)]
    assert cli_boundary(main.main, argv) == 0
    recs = [r for r in _records(out) if r.get("role") == SCENARIO]
    assert sorted(r["scenario"] for r in recs) == ["offline", "singlestream"]
    assert not [r for r in _records(out) if r.get("role") in (ACCURACY, TIMING)]  # no batch sizes: scenarios only
    for r in recs:
        assert r["images"] == 8 and r["top1"] is not None and r["batch_size"] == 4
        assert r["serve_settings"]["max_batch"] == 4 and r["serve_settings"]["duration_s"] == 0.3
        assert (out / r["loadgen_logs"] / "mlperf_log_detail.txt").is_file()
    printed = capsys.readouterr().out
    assert "2 measured" in printed
    assert "Served within the budget" in printed and "images/s" not in printed  # no timing table of scenario rows
    assert "Served within the budget" in (out / "table_outputs" / "served.md").read_text()
    assert cli_boundary(main.main, argv) == 0
    assert "2 found done before" in capsys.readouterr().out
    assert cli_boundary(main.main, argv[:-4] + ["--max_batch", "2", "--output", str(out)]) == 0
    assert "2 measured" in capsys.readouterr().out  # another batcher: other jobs
