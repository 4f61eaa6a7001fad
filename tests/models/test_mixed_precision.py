"""--mixed_precision: the layers kept out of int8 so that top-1 on held-out photos stays within a budget, searched by
bisection over the layers ranked by the error each adds; EfficientNet-Lite0 with its ImageNet weights on foolbox's
20 labelled photos, quantized on the CPU."""
from __future__ import annotations

import json
import logging
from dataclasses import replace
from pathlib import Path

import numpy as np
import onnx
import pytest
from PIL import Image

import main
from tests.conftest import squeeze
from utils.core.errors import ArtTRTError, cli_boundary
from utils.data.options import DataOptions
from utils.models import mixed_precision as mp
from utils.models.chain import onnx_for
from utils.models.precision import CalibOptions, calibration_data, convert_precision


def _quantize_count(path: Path) -> int:
    return sum(1 for n in onnx.load(str(path)).graph.node if n.op_type == "QuantizeLinear")


def _float_weights(path: Path) -> set:
    """The names of the Conv/Gemm nodes whose weight is not the output of a DequantizeLinear node."""
    nodes = onnx.load(str(path)).graph.node
    dq = {o for n in nodes if n.op_type == "DequantizeLinear" for o in n.output}
    return {n.name for n in nodes if n.op_type in ("Conv", "Gemm") and n.input[1] not in dq}


def _fenced(path: Path) -> set:
    """The names of the nodes that take an input from a DequantizeLinear node (run quantized in TensorRT)."""
    nodes = onnx.load(str(path)).graph.node
    dq = {o for n in nodes if n.op_type == "DequantizeLinear" for o in n.output}
    return {n.name for n in nodes if n.op_type != "QuantizeLinear" and dq & set(n.input)}


@pytest.fixture(scope="module")
def lite0_onnx(lite0):
    path, _ = onnx_for(lite0, (-1, 3, 224, 224))
    return path


@pytest.fixture(scope="module")
def gray_calib(tmp_path_factory) -> Path:
    """Two nearly uniform grey frames as the calibration set (a camera's blank frames): the activation ranges they
    give clip real photos, and int8 loses almost all of its top-1 on them (measured: 5 % against fp32's 85 %)."""
    root = tmp_path_factory.mktemp("gray") / "calib"
    rng = np.random.default_rng(0)
    for i in range(2):
        path = root / "n01440764" / f"gray{i}.jpg"
        path.parent.mkdir(parents=True, exist_ok=True)
        pixels = np.full((256, 256, 3), 128, np.uint8) + rng.integers(0, 3, (256, 256, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(path, "JPEG", quality=90)
    return root


# (c) the bisection, as a pure function

NAMES = [f"conv{i}" for i in range(10)]


def _fake(top1_of_k, calls):
    def evaluate(k):
        calls.append(k)
        return {"top1": top1_of_k(k), "size_mib": 10.0 - k / 10, "file": f"k{k}.onnx"}

    return evaluate


def test_bisection_finds_the_smallest_k_within_budget_when_top1_rises_with_k():
    calls, ranked = [], []
    result = mp.bisect_keep(_fake(lambda k: 80.0 + k, calls), lambda: ranked.append(1) or NAMES, 90.0, 3.0)
    # drop = 10 - k: over budget up to k = 6, within from k = 7
    assert calls == [0, 10, 5, 7, 6] and ranked == [1]  # ranked once, after k = 0 failed
    assert result["final_k"] == 7 and result["met"] is True and result["kept"] == NAMES[:7]
    steps = result["steps"]
    assert [(s["k"], s["top1"], s["drop"], s["within"]) for s in steps] == [
        (0, 80.0, 10.0, False), (10, 90.0, 0.0, True), (5, 85.0, 5.0, False), (7, 87.0, 3.0, True),
        (6, 86.0, 4.0, False)]
    assert [s["added"] for s in steps] == [[], NAMES, NAMES[:5], NAMES[5:7], NAMES[5:6]]
    assert steps[3]["kept"] == NAMES[:7] and steps[3]["size_mib"] == 9.3 and steps[3]["file"] == "k7.onnx"


def test_bisection_stops_with_every_layer_kept_when_the_budget_cannot_be_met(caplog):
    calls = []
    with caplog.at_level(logging.WARNING, logger="utils.models.mixed_precision"):
        result = mp.bisect_keep(_fake(lambda k: 80.0, calls), lambda: NAMES, 90.0, 1.0)
    assert calls == [0, 10] and result["final_k"] == 10 and result["met"] is False and result["kept"] == NAMES
    assert [s["within"] for s in result["steps"]] == [False, False]
    assert caplog.messages == ["mixed precision: with all 10 ranked layers kept out of quantization top-1 still drops "
                               "10.00 points (more than --max_top1_drop 1): using that file"]


def test_bisection_stops_at_k0_when_it_meets_the_budget_and_ranks_nothing():
    calls = []
    result = mp.bisect_keep(_fake(lambda k: 89.5, calls), lambda: pytest.fail("ranked"), 90.0, 0.5)
    assert calls == [0] and result == {"steps": result["steps"], "final_k": 0, "kept": [], "met": True}
    assert len(result["steps"]) == 1 and result["steps"][0]["drop"] == 0.5 and result["steps"][0]["within"]


def _paired(half):
    """evaluate(k) with the paired interval of its change: top-1 80 + k against fp32's 90, +-half points."""
    def evaluate(k):
        change = k - 10.0
        return {"top1": 80.0 + k, "paired": {"paired_low_points": change - half, "paired_high_points": change + half}}

    return evaluate


def test_the_search_judges_each_step_on_its_paired_interval_as_the_gate_does(caplog):
    # +-0.5 points: k = 7 (drop 3, interval 2.5..3.5) holds the 3-point budget: inconclusive, not within;
    # k = 8 (1.5..2.5) is within: the search keeps one layer more than the point drop would
    result = mp.bisect_keep(_paired(0.5), lambda: NAMES, 90.0, 3.0)
    assert result["final_k"] == 8 and result["met"] is True
    by_k = {s["k"]: s for s in result["steps"]}
    assert by_k[7]["outcome"] == "inconclusive" and by_k[7]["within"] is False
    assert by_k[7]["drop_interval"] == [2.5, 3.5] and by_k[8]["outcome"] == "ok" and by_k[0]["outcome"] == "OVER"
    # +-20 points (a handful of photos): even every layer kept cannot be told within 3 points
    with caplog.at_level(logging.WARNING, logger="utils.models.mixed_precision"):
        result = mp.bisect_keep(_paired(20.0), lambda: NAMES, 90.0, 3.0)
    assert result["met"] is False and result["final_k"] == 10 and result["steps"][-1]["outcome"] == "inconclusive"
    assert caplog.messages == ["mixed precision: with all 10 ranked layers kept out of quantization, top-1 drops 0.00 "
                               "points (paired 95 % interval -20.00..20.00), which holds --max_top1_drop 3: too few "
                               "held-out images to tell; using that file"]


def test_a_share_of_fp32s_top1_is_mlperfs_rule_in_the_search():
    from utils.core.top1_budget import Top1Budget

    # 5 % of fp32's 90 % is 4.5 points: k = 6 (drop 4) is within, k = 5 (drop 5) is not
    result = mp.bisect_keep(_fake(lambda k: 80.0 + k, []), lambda: NAMES, 90.0, Top1Budget.parse("5%"))
    assert result["final_k"] == 6 and [s["within"] for s in result["steps"] if s["k"] in (5, 6)] == [False, True]
    result = mp.bisect_keep(_fake(lambda k: 80.0 + k, []), lambda: NAMES, 90.0, Top1Budget.parse("5"))
    assert result["final_k"] == 5


# (d) the held-out images

def test_heldout_pick_leaves_out_calibration_images_and_caps_by_a_seeded_pick(tmp_path):
    files = [tmp_path / f"c/img{i}.jpg" for i in range(10)]
    calib = [files[2], files[7], tmp_path / "elsewhere.jpg"]
    assert mp.heldout_pick(files, calib, seed=0).tolist() == [0, 1, 3, 4, 5, 6, 8, 9]
    capped = mp.heldout_pick(files, calib, seed=0, cap=4)
    assert len(capped) == 4 and sorted(capped) == list(capped) and not {2, 7} & set(capped.tolist())
    assert capped.tolist() == mp.heldout_pick(files, calib, seed=0, cap=4).tolist()  # seeded: the same pick
    assert mp.heldout_pick(files, files, seed=0).tolist() == []


def test_heldout_images_are_the_photos_calibration_did_not_pick(lite0, demo_data, gray_calib, caplog):
    data = DataOptions(str(demo_data), progress=False)
    _, calib = calibration_data(lite0, CalibOptions(calib_size=4), data, load=False)
    with caplog.at_level(logging.WARNING, logger="utils.models.mixed_precision"):
        held = mp.heldout_images(lite0, data, calib, seed=0)
    assert caplog.messages == ["mixed precision: only 16 held-out images judge the search: one image is 6.25 points "
                               "of top-1"]
    assert held.facts["heldout_images"] == 16 == len(held.indices)
    assert not set(held.facts["heldout_files"]) & set(calib["calib_files"])
    assert sorted(held.facts["heldout_files"] + calib["calib_files"]) == sorted(held.ds.files)
    # calibration on another folder: every photo of --dataset judges the search
    _, other = calibration_data(lite0, CalibOptions(calib_size=2, calib_dataset=str(gray_calib)), data, load=False)
    assert mp.heldout_images(lite0, data, other, seed=0).facts["heldout_images"] == 20
    _, every = calibration_data(lite0, CalibOptions(calib_size=20), data, load=False)
    with pytest.raises(ArtTRTError) as err:
        mp.heldout_images(lite0, data, every, seed=0)
    assert str(err.value) == (f"no held-out image is left to judge --mixed_precision: calibration took all 20 images "
                              f"of {demo_data}; pass a smaller --calib_size, or --calib_dataset another folder")


# (a), (b) the search on the real network

@pytest.mark.slow
def test_a_budget_met_by_plain_int8_is_one_step_and_the_plain_file(lite0, lite0_onnx, demo_data):
    data = DataOptions(str(demo_data), progress=False)
    calib = CalibOptions(calib_method="max", calib_size=4, quantizer="modelopt")
    # 16 held-out photos tell a change only to about +-15 points (no image flips: Newcombe's interval -14.5..14.5):
    # a 20-point budget is one they can judge
    out, facts = convert_precision(lite0_onnx, "int8", lite0, replace(calib, mixed_precision_budget=20.0), data)
    block = facts["mixed_precision"]
    assert [(s["k"], s["top1"], s["drop"], s["within"]) for s in block["steps"]] == [(0, 87.5, 0.0, True)]
    assert block["fp32_top1"] == 87.5 and block["heldout_images"] == 16 and block["calib_images"] == 4
    assert block["final_k"] == 0 and block["kept"] == [] and block["met"] is True and block["budget"] == 20.0
    plain, _ = convert_precision(lite0_onnx, "int8", lite0, calib, data)
    assert out == plain  # nothing excluded: the same file, under the same key as before this feature


@pytest.fixture(scope="module")
def searched(lite0, lite0_onnx, demo_data, gray_calib):
    data = DataOptions(str(demo_data), progress=False)
    calib = CalibOptions(calib_method="max", calib_size=2, quantizer="modelopt", calib_dataset=str(gray_calib),
                         mixed_precision_budget=20.0)  # what 20 photos can judge (above)
    out, facts = convert_precision(lite0_onnx, "int8", lite0, calib, data)
    return out, facts, calib, data


@pytest.mark.slow
def test_a_budget_that_int8_misses_keeps_the_worst_layers_out_found_by_bisection(lite0, lite0_onnx, searched,
                                                                                 caplog):
    out, facts, calib, data = searched
    b = facts["mixed_precision"]
    steps = b["steps"]
    n = b["ranked_layers"]
    print("k, top-1, drop:", [(s["k"], s["top1"], s["drop"]) for s in steps])
    assert b["fp32_top1"] == 85.0 and b["heldout_images"] == 20 and b["calib_images"] == 2 and n == 49
    assert steps[0]["k"] == 0 and steps[0]["top1"] <= 10.0 and not steps[0]["within"]  # grey calibration ruins int8
    # each step judged on its paired interval against fp32 on the same 20 photos, as the gate judges a row
    assert steps[0]["outcome"] == "OVER" and steps[0]["drop_interval"][0] > 20.0
    assert all(s["outcome"] == ("ok" if s["within"] else "OVER") for s in steps)
    assert all(s["drop_interval"][0] <= s["drop"] <= s["drop_interval"][1] for s in steps)
    assert steps[1]["k"] == n and steps[1]["within"]
    lo, hi = 0, n  # the bisection, replayed from the steps measured
    for s in steps[2:]:
        assert s["k"] == (lo + hi) // 2
        lo, hi = (lo, s["k"]) if s["within"] else (s["k"], hi)
    assert hi - lo == 1 and b["final_k"] == hi == 23 and b["met"] is True
    final = next(s for s in steps if s["k"] == b["final_k"])
    assert final["drop"] <= 0.0 and b["kept"] == final["kept"] and len(b["kept"]) == 23
    assert [s["k"] for s in steps] == [0, 49, 24, 12, 18, 21, 22, 23]
    k0 = Path(b["final_onnx"]).with_name(steps[0]["file"])
    assert out == Path(b["final_onnx"]) and out.name == final["file"] and out != k0
    assert _quantize_count(out) < _quantize_count(k0)
    assert set(b["kept"]) <= _fenced(k0) and not _fenced(out) & set(b["kept"])  # no Q/DQ in front of them now
    # a rerun finds the search done: no step is measured again
    search_file = Path(b["search_file"])
    stamp = search_file.stat().st_mtime_ns
    with caplog.at_level(logging.INFO, logger="utils.models"):
        again, facts2 = convert_precision(lite0_onnx, "int8", lite0, calib, data)
    assert again == out and facts2["mixed_precision"]["cached"] is True and search_file.stat().st_mtime_ns == stamp
    said = [m for m in caplog.messages if m.startswith("mixed precision")]
    assert said == ["mixed precision: only 20 held-out images judge the search: one image is 5.00 points of top-1",
                    f"mixed precision, found before in {search_file.name}: 23 of 49 ranked layers kept out of int8: "
                    "top-1 90.00% against fp32 85.00% on 20 held-out images (drop -5.00 points, budget 20); the file: "
                    f"{out} (build_trt.py --onnx takes it)"]  # no step measured again


@pytest.mark.slow
def test_onnx_runtimes_quantizer_keeps_the_excluded_layers_in_float(lite0, lite0_onnx, demo_data, searched):
    data = DataOptions(str(demo_data), progress=False)
    worst = tuple(searched[1]["mixed_precision"]["kept"][:5])
    calib = CalibOptions(calib_method="max", calib_size=2, quantizer="ort")
    plain, _ = convert_precision(lite0_onnx, "int8", lite0, calib, data)
    fewer, facts = convert_precision(lite0_onnx, "int8", lite0, replace(calib, exclude=worst), data)
    assert facts["tool"] == "onnxruntime.quantization.quantize_static" and facts["excluded_layers"] == list(worst)
    # ONNX Runtime's QDQ keeps the weights of an excluded layer in float; its input activation stays Q/DQ'd where the
    # layer that makes it quantizes its output (ModelOpt's files above have neither)
    assert fewer != plain and _float_weights(fewer) & set(worst) == set(worst)
    assert _float_weights(plain) & set(worst) == set()


def test_main_runs_the_search_records_it_and_draws_its_table(demo_data, gray_calib, searched, tmp_path):
    out = tmp_path / "o"
    assert main.main(["-v", "--network", "efficientnet_lite0", "--pretrained", "--dataset", str(demo_data),
                      "--calib_dataset", str(gray_calib), "--calib_size", "2", "--calib_method", "max",
                      "--quantizer", "modelopt", "--backend", "onnxrt", "--precision", "int8", "--max_top1_drop", "20",
                      "--mixed_precision", "--output", str(out), "--quiet"]) == 0
    recs = [json.loads(p.read_text()) for p in (out / "records").glob("*.json")]
    block = recs[0]["preparation"]["mixed_precision"]
    assert block["final_k"] == 23 and block["cached"] is True  # the search above, found by its key
    assert recs[0]["top1"] == 90.0  # the validation ran the file the search chose (all 20 photos)
    text = squeeze((out / "table_outputs" / "mixed-precision.md").read_text())
    assert "### efficientnet_lite0: ONNX Runtime int8 (cpu, max, 2 img, mixed, 23 layers fp32)" in text
    assert "| 23 | " in text and "| 90.00 | -5.00 |" in text


# (e) the request, checked before any work

@pytest.mark.parametrize("argv, message", [
    (["--precision", "int8", "--backend", "onnxrt", "--mixed_precision"],
     "--mixed_precision keeps layers out of int8/fp8 until top-1 is within a budget: give it with --max_top1_drop "
     "POINTS"),
    (["--backend", "onnxrt", "--max_top1_drop", "1", "--mixed_precision"],
     "--mixed_precision keeps layers of an int8/fp8 file in higher precision, but this run asks fp32: add --precision "
     "int8 (or fp8)"),
    (["--backends", "torch", "compile", "--precision", "int8", "--max_top1_drop", "1", "--mixed_precision"],
     "--mixed_precision makes an ONNX file, which torch, compile does not run: use --backend onnxrt or tensorrt"),
    (["--backend", "onnxrt", "--precisions", "fp32", "int8", "--max_top1_drop", "1"],  # the gate needs its reference
     "--max_top1_drop measures each row against torch fp32: add torch to --backends and fp32 to --precisions"),
])
def test_mixed_precision_requests_that_cannot_run_are_one_sentence(argv, message, tmp_path, capsys):
    assert cli_boundary(main.main, ["-v", "--dataset", str(tmp_path / "photos"), *argv, "--output", str(tmp_path),
                                    "--quiet"]) == 2
    assert capsys.readouterr().err == f"error: {message}\n"


def test_mixed_precision_is_an_option_of_a_study(tmp_path, capsys):
    assert cli_boundary(main.main, ["--compare", "--mixed_precision", "--output", str(tmp_path)]) == 2
    assert capsys.readouterr().err == "error: --mixed_precision is an option of a study: add -v\n"


# (f) the record and the table: tests/report/test_tables_mixed.py
