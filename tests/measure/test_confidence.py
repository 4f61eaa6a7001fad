"""Issue 41, part 1: the intervals and the paired test against published values (Newcombe 1998 for Wilson's
interval, Agresti's presidential-approval table for the paired change and McNemar), their coverage by simulation,
and the record fields and verdicts of constructed predictions with known discordance."""
from __future__ import annotations

import numpy as np
import pytest

from tests.report import as_read
from utils.core.confidence import images_to_settle, mcnemar_p, newcombe_paired, paired_change, verdict_in_words, wilson


@pytest.mark.parametrize("k, n, low, high", [
    # Newcombe RG (1998), Two-sided confidence intervals for the single proportion, Stat Med 17:857-872, Table I,
    # method 3 (the score interval of Wilson 1927)
    (81, 263, 0.2553, 0.3662), (15, 148, 0.0624, 0.1605), (0, 20, 0.0, 0.1611), (1, 29, 0.0061, 0.1718)])
def test_wilson_interval_matches_newcombes_published_values(k, n, low, high):
    got = wilson(k, n)
    assert got == pytest.approx((low, high), abs=5e-5)


def test_paired_change_on_agrestis_approval_table():
    """Agresti, Categorical Data Analysis (2nd ed., section 10.1): 1,600 people asked twice; 794 approve both times,
    150 then not, 86 not then yes, 570 neither. Change -0.04; the Wald interval (-0.059, -0.021); McNemar's z -4.17.
    Newcombe's interval lies within a thousandth of Wald's at this size; the exact McNemar p is below 1e-4."""
    low, high = newcombe_paired(794, 150, 86, 570)
    assert low == pytest.approx(-0.059, abs=1e-3) and high == pytest.approx(-0.021, abs=1e-3)
    p = mcnemar_p(150, 86)
    assert 1e-5 < p < 1e-4  # z = -4.17: two-sided normal p 3.0e-5; the exact binomial 3.7e-5
    assert mcnemar_p(0, 0) == 1.0 and mcnemar_p(3, 3) == 1.0


def test_the_paired_interval_covers_the_true_change_95_percent_of_the_time():
    rng = np.random.default_rng(0)
    probs, true = [0.70, 0.03, 0.02, 0.25], 0.02 - 0.03  # both, lost, gained, neither
    hits = sum(lo <= true <= hi for lo, hi in (newcombe_paired(*rng.multinomial(300, probs)) for _ in range(1000)))
    assert 0.93 <= hits / 1000 <= 0.975


def constructed(n=1000, lost=30, gained=10, seed=0):
    """Labels and two prediction arrays: the reference right on 80 %, the other losing `lost` of those (class 7 most)
    and gaining `gained` of the reference's wrong ones."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 100, n)
    ref = labels.copy()
    ref[800:] = (labels[800:] + 1) % 100  # the reference wrong on the last 200
    other = ref.copy()
    losers = np.arange(lost)
    labels[losers[: lost // 2]] = 7  # half the lost images are of class 7
    ref[losers] = labels[losers]
    other[losers] = (labels[losers] + 1) % 100
    other[800:800 + gained] = labels[800:800 + gained]
    return other, ref, labels


def test_paired_change_of_constructed_predictions():
    other, ref, labels = constructed()
    f = paired_change(other, ref, labels)
    assert (f["paired_images"], f["paired_lost"], f["paired_gained"]) == (1000, 30, 10)
    assert f["paired_change_points"] == pytest.approx(-2.0)
    assert f["paired_low_points"] < -2.0 < f["paired_high_points"] < 0
    assert f["mcnemar_p"] == pytest.approx(0.002221, rel=1e-3)  # 10 of 40 discordant: binomial two-sided p
    assert f["classes_losing"][0] == {"class": 7, "lost": 15}
    named = paired_change(other, ref, labels, names=[f"c{i}" for i in range(100)])
    assert named["classes_losing"][0] == {"class": 7, "lost": 15, "name": "c7"}
    assert f["paired_verdict"].startswith("loses 2.00 points (")
    unlabelled = np.full_like(labels, -1)
    assert paired_change(other, ref, unlabelled) is None and paired_change(other[:5], ref, labels) is None
    no_rank = other.copy()
    no_rank[800:810] = -1  # could not rank those: wrong, never a gain
    assert paired_change(no_rank, ref, labels)["paired_gained"] == 0


def test_the_verdict_in_words():
    assert verdict_in_words(-2.0, -3.1, -0.9) == "loses 2.00 points (-3.10..-0.90)"
    assert verdict_in_words(0.5, 0.1, 0.9) == "gains 0.50 points (0.10..0.90)"
    assert verdict_in_words(0.0, -0.4, 0.3) == "no measurable change (within -0.40..+0.30 points)"
    assert verdict_in_words(0.0, -11.3, 11.3) == "too few images to tell (the interval spans -11.30..+11.30 points)"


def test_interval_widths_at_20_1000_and_50000_images_as_docs_say():
    """docs/confidence.md: at 76 % top-1, Wilson's half-width; with 1 % of images lost and 1 % gained, the paired."""
    widths = []
    for n in (20, 1000, 50000):
        k, d = round(0.76 * n), round(0.01 * n)
        lo, hi = wilson(k, n)
        plo, phi = newcombe_paired(k - d, d, d, n - k - d)
        widths.append((round(50 * (hi - lo), 2), round(50 * (phi - plo), 2)))
    assert widths == [(17.84, 8.06), (2.64, 0.9), (0.37, 0.12)]


def test_images_to_settle_a_gate():
    assert images_to_settle(1000, -1.9, -0.1, 1.0, -1.0) is None  # the budget edge at the centre: cannot say
    assert images_to_settle(1000, -1.5, 0.5, 1.0, -0.5) == 4000  # half-width 1.0, margin 0.5: four times the images


# --- the gate on the interval (issue 41, part 2) ---------------------------------------------------------------------

def gate_records(low, high, change, top1=70.0):
    from tests.report.test_hostile_records import record

    ref = record(role="accuracy", setup_key="s-ref", images=1000)
    other = record(backend="onnxrt", precision="int8", role="accuracy", setup_key="s-int8", images=1000, top1=top1,
                   paired_images=1000, paired_lost=20, paired_gained=10, paired_change_points=change,
                   paired_low_points=low, paired_high_points=high, mcnemar_p=0.1,
                   paired_verdict="x", time="2026-12-02T10:01:00+00:00")
    timing = dict(other, role="timing", batch_size=8, time="2026-12-02T10:02:00+00:00")
    for k in ("paired_low_points", "paired_high_points", "paired_change_points"):
        timing.pop(k)  # a timing row carries its accuracy pass's top-1, not its paired figures
    return [ref, other, timing]


@pytest.mark.parametrize("low, high, outcome, rc", [
    (-0.9, -0.1, "ok", 0),             # the whole drop interval (0.1..0.9) within 1 point: passes
    (-2.5, -1.2, "OVER", 3),           # all of it beyond: fails
    (-1.5, -0.3, "inconclusive", 5),   # 0.3..1.5 holds the budget: more images would tell
])
def test_the_gate_judges_the_paired_interval_with_three_outcomes(low, high, outcome, rc, capsys):
    from utils.report.select import judge_drop
    judge_drop = as_read(judge_drop)
    from utils.study.finish import top1_gate
    top1_gate = as_read(top1_gate)

    recs = gate_records(low, high, (low + high) / 2, top1=70.0 + (low + high) / 2)
    drop = -(low + high) / 2
    assert judge_drop(drop, 1.0, recs[1]) == outcome
    assert top1_gate(recs, 1.0) == rc
    err = capsys.readouterr().err
    if outcome == "inconclusive":
        assert "is inconclusive: 0.90 points below Vanilla (paired 95 % interval of the drop 0.30..1.50), which " \
               "holds --max_top1_drop 1; about 36,000 images would settle it" in err  # (0.6 / 0.1)^2 x 1,000
    elif outcome == "OVER":
        assert "is 1.85 points below Vanilla (paired 95 % interval of the drop 1.20..2.50) (more than" in err
    else:
        assert err == ""
    assert judge_drop(drop, 1.0) == ("OVER" if drop > 1.0 else "ok")  # no paired interval: the point drop


@pytest.mark.slow
def test_a_study_on_twenty_photos_is_inconclusive_under_a_one_point_budget(tmp_path, demo_data, capsys):
    import main
    from utils.core.errors import cli_boundary

    rc = cli_boundary(main.main, ["-v", "--network", "efficientnet_lite0", "--pretrained", "--dataset", str(demo_data),
                                  "--backends", "torch", "onnxrt", "--batch_sizes", "4", "--duration", "0",
                                  "--max_top1_drop", "1", "--output", str(tmp_path / "o"), "--quiet"])
    err = capsys.readouterr().err
    assert rc == 5, err
    assert "top-1 gate: efficientnet_lite0 ONNX Runtime fp32 (cpu) is inconclusive: 0.00 points below" in err
    table = (tmp_path / "o" / "table_outputs" / "worth-it.md").read_text()
    assert "| inconclusive" in table


# --- speed with intervals (issue 41, part 3) --------------------------------------------------------------------------

def test_the_block_bootstrap_covers_the_mean_and_keeps_a_drift_together():
    from utils.measure.stats import block_bootstrap

    rng = np.random.default_rng(3)
    hits = 0
    for _ in range(100):
        got = block_bootstrap(rng.normal(10.0, 1.0, 400), resamples=300, seed=int(rng.integers(1 << 30)))
        hits += got["mean"][0] <= 10.0 <= got["mean"][1]
    assert 88 <= hits <= 100 and got["block"] == 7 and got["batches"] == 400
    assert block_bootstrap([1.0] * 9) == {}  # too few batches to say
    steady = block_bootstrap(np.r_[np.full(200, 10.0), np.full(200, 12.0)] + rng.normal(0, 0.01, 400))
    iid = rng.permutation(np.r_[np.full(200, 10.0), np.full(200, 12.0)] + rng.normal(0, 0.01, 400))
    # a drift (clocks falling halfway) is kept in blocks: its interval is wider than the same values shuffled
    assert np.diff(steady["mean"])[0] > np.diff(block_bootstrap(iid)["mean"])[0]


def test_a_speed_up_whose_interval_holds_one_is_no_measurable_difference():
    from utils.report.sections.confidence_tables import speed_ratio
    speed_ratio = as_read(speed_ratio)

    ref = {"images_per_s": 100.0, "speed_ci": {"images_per_s": [95.0, 105.0]}}
    assert speed_ratio({"images_per_s": 200.0, "speed_ci": {"images_per_s": [190.0, 210.0]}}, ref) == \
        "2.00x (1.86..2.15)"
    assert speed_ratio({"images_per_s": 102.0, "speed_ci": {"images_per_s": [97.0, 107.0]}}, ref).endswith(
        "no measurable difference")
    assert speed_ratio({"images_per_s": 200.0}, ref) == "2.00x"  # no interval: the point


def test_a_timing_record_carries_its_speed_intervals():
    from utils.measure.measurement import speed_interval

    rng = np.random.default_rng(0)
    all_ms, model_ms = list(rng.normal(20, 1, 200)), list(rng.normal(18, 1, 200))
    ci = speed_interval(all_ms, model_ms, 50.0)
    low, high = ci["images_per_s"]
    assert low < 50.0 < high and 0.95 * 50 < low and high < 1.05 * 50
    assert ci["latency_model_p50"][0] < np.median(model_ms) < ci["latency_model_p50"][1]
    assert speed_interval(all_ms[:5], model_ms[:5], 50.0) is None


# --- --repeats: intervals across whole runs (issue 41, part 3) -------------------------------------------------------

def _run(rate: float, p50: float, **kw) -> dict:
    out = {"images_per_s": rate, "latency_model_p50": p50, "latency_model_p90": p50 + 1, "latency_model_p99": p50 + 2,
           "latency_model_mean": p50 + 0.5, "latency_model_min": p50 - 1, "latency_model_max": p50 + 3,
           "latency_model_std": 0.5, "latency_model_cv_percent": 5.0, "latency_model_batches": 10,
           "latency_all_mean": p50 + 1, "latency_all_p50": p50 + 0.5, "latency_all_p90": p50 + 1.5,
           "latency_all_p99": p50 + 2.5, "latency_all_min": p50 - 0.5, "latency_all_max": p50 + 4,
           "latency_all_std": 0.6, "latency_all_cv_percent": 6.0, "latency_all_batches": 10, "timed_images": 40,
           "latency_unstable": False}
    out.update(kw)
    return out


def test_across_runs_is_the_students_t_interval_of_the_textbook():
    from utils.measure.measurement import across_runs

    runs = [_run(r, 10.0 + i) for i, r in enumerate([100.0, 102.0, 98.0, 101.0, 99.0])]
    got = across_runs(runs)
    # mean 100, s = sqrt(2.5); t(0.975, 4 d.f.) = 2.776 (every t table): half-width 2.776 x 1.5811 / sqrt(5) = 1.963
    assert got["images_per_s"] == pytest.approx(100.0)
    assert got["speed_ci"]["images_per_s"] == pytest.approx([98.0368, 101.9632], abs=1e-4)
    assert got["speed_ci"]["method"] == "Student-t over 5 runs" and got["speed_ci"]["runs"] == 5
    assert [r["images_per_s"] for r in got["repeats"]] == [100.0, 102.0, 98.0, 101.0, 99.0]
    assert got["latency_model_p50"] == pytest.approx(12.0)  # mean of 10..14
    assert got["speed_ci"]["latency_model_p50"][0] < 12.0 < got["speed_ci"]["latency_model_p50"][1]
    assert got["timed_images"] == 200 and got["latency_model_batches"] == 50
    assert across_runs(runs[:1]) == {}  # one run: its own (bootstrap) interval stays


def test_across_runs_keeps_a_runs_order_of_latency_figures():
    from utils.measure.measurement import across_runs

    got = across_runs([_run(100.0, 10.0), _run(90.0, 20.0, latency_unstable=True), _run(95.0, 15.0)])
    for prefix in ("latency_model", "latency_all"):
        order = [got[f"{prefix}_{k}"] for k in ("min", "p50", "p90", "p99", "max")]
        assert order == sorted(order), (prefix, order)
    assert got["latency_model_min"] == 9.0 and got["latency_model_max"] == 23.0  # the least and the most of all runs
    assert got["latency_unstable"] is True  # one unstable run marks the row
    assert across_runs([_run(100.0, 10.0), _run(float("nan"), 11.0)])["speed_ci"]["images_per_s"] is None


def test_a_study_with_repeats_records_each_run_and_its_interval(tmp_path):
    import main
    from utils.core.errors import cli_boundary
    from utils.report.records import load_records

    out = tmp_path / "o"
    argv = ["-v", "--network", "resnet18", "--synthetic", "4", "--batch_size", "2", "--iterations", "3",
            "--duration", "0", "--output", str(out), "--quiet"]
    assert cli_boundary(main.main, argv + ["--repeats", "3"]) == 0
    timing = [r.as_dict() for r in load_records(out) if r.role == "timing"]  # the record as written
    assert len(timing) == 1
    rec = timing[0]
    assert [len(rec["repeats"]), rec["speed_ci"]["runs"], rec["timed_images"]] == [3, 3, 18]  # 3 runs x 3 batches x 2
    rates = [r["images_per_s"] for r in rec["repeats"]]
    assert rec["images_per_s"] == pytest.approx(sum(rates) / 3)
    low, high = rec["speed_ci"]["images_per_s"]
    assert low <= rec["images_per_s"] <= high
    speed = (out / "table_outputs" / "speed.md").read_text()
    assert "| 3 runs" in speed and "Student-t interval across them" in speed
    # a single run is another measurement (its key differs): measured, not taken for the three-run row
    assert cli_boundary(main.main, argv) == 0
    timing = [r.as_dict() for r in load_records(out) if r.role == "timing"]
    assert sorted(bool(r.get("repeats")) for r in timing) == [False, True]


# --- MLPerf's relative rule: --max_top1_drop 1% (issue 41, part 2) ---------------------------------------------------

def test_a_top1_budget_is_points_or_a_share_of_the_references_top1():
    from utils.core.top1_budget import Top1Budget

    points, share = Top1Budget.parse("1"), Top1Budget.parse(" 1% ")
    assert (points.relative, share.relative) == (False, True)
    assert points.points(76.13) == 1.0 and share.points(76.13) == pytest.approx(0.7613)  # MLPerf: keep 99 %
    assert f"{points:g} {share:g} {share}" == "1 1% 1%"
    assert Top1Budget.parse("0.1%").points(80.0) == pytest.approx(0.08)  # MLPerf's high-accuracy target (99.9 %)
    import pickle
    assert pickle.loads(pickle.dumps(share)).relative is True
    with pytest.raises(ValueError):
        Top1Budget.parse("one")
    from utils.core.errors import ArtTRTError
    for bad, said in (("-1", "a number of points, at least 0, not -1"), ("100%", "from 0% to below 100%")):
        with pytest.raises(ArtTRTError, match=said):
            Top1Budget.parse(bad).check()


def test_the_gate_takes_mlperfs_rule_on_the_paired_interval(capsys):
    from utils.core.top1_budget import Top1Budget
    from utils.study.finish import top1_gate
    top1_gate = as_read(top1_gate)

    # reference 70 %, a row 0.9 points below with the paired drop interval 0.30..1.50
    recs = gate_records(-1.5, -0.3, -0.9, top1=69.1)
    assert top1_gate(recs, Top1Budget.parse("3%")) == 0  # 3 % of 70 is 2.1 points: the whole interval is within
    assert capsys.readouterr().err == ""
    assert top1_gate(recs, Top1Budget.parse("1%")) == 5  # 0.7 points: the interval holds it
    assert ("holds --max_top1_drop 1%: 0.70 points of Vanilla's 70.00" in capsys.readouterr().err)
    assert top1_gate(recs, Top1Budget.parse("0.1%")) == 3  # 0.07 points: all of it beyond
    assert "(more than --max_top1_drop 0.1%: 0.07 points of Vanilla's 70.00)" in capsys.readouterr().err


def test_the_flag_takes_a_share_and_refuses_what_is_neither(tmp_path, capsys):
    import main
    from utils.core.errors import cli_boundary

    with pytest.raises(SystemExit) as stop:  # argparse's own exit 2 with the sentence
        cli_boundary(main.main, ["--report", str(tmp_path), "--max_top1_drop", "1.5 points"])
    assert stop.value.code == 2 and "--max_top1_drop: '1.5 points': give points of top-1 (1) or a share of Vanilla" \
                                    "'s top-1 (1%, MLPerf's 99 % rule)" in capsys.readouterr().err
    assert main.build_parser().parse_args(["--max_top1_drop", "1%"]).max_top1_drop.relative is True
