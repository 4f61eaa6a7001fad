"""The study's tables of utils/report/sections/, cell by cell: which row is the PyTorch fp32 reference and which
rows share its images (is_reference, images_key), the top-1 drops and the --max_top1_drop gate, the "is TensorRT
worth it?" tables (speed-ups, unstable marks against the peers of the same batch size, agreement, the gate's
column), the "Not measured" table, the study's row order, the dataset / weights columns that tell apart
identities reading the same, the accuracy marks, and how a table is narrowed to the terminal's width."""
from __future__ import annotations

from tests.report import R
from utils.report.doc import compose
from utils.report.sections.cells import accuracy, rate
from utils.report.sections.results_tables import percentile_table, results_table, side_by_side_markdown
from utils.report.sections.worth_it_tables import not_measured_markdown, worth_it_markdown
from utils.report.select import identity_columns, images_key, is_reference, not_numbers, over_top1_drop, study_order, top1_drops, unstable_reason
from utils.report.terminal import fit_terminal
from utils.report.doc import table
from tests.report.test_tables import _study_records, cells, rec


# --- cells and columns -----------------------------------------------------------------------------------------

def test_accuracy_marks_random_weights_outputs_that_are_not_numbers_and_flat_outputs():
    r = R(top1=50.0, weights="random (seed 0)", nonfinite_outputs=3, unrankable_outputs=2)
    assert accuracy(r, "top1") == "50.00 (random weights; NaN/Inf on 3 img; flat on 2 img)"
    assert accuracy(R({"top1": 50.0, "nonfinite_outputs": 3}), "top1") == "50.00 (NaN/Inf on 3 img)"
    assert accuracy(R({"top1": 50.0, "unrankable_outputs": 2}), "top1") == "50.00 (flat on 2 img)"
    assert accuracy(R({"top1": 50.0, "nonfinite_outputs": 0, "unrankable_outputs": 0}), "top1") == "50.00"
    assert not_numbers(R({"nonfinite_outputs": 3, "unrankable_outputs": 2})) == 5
    assert not_numbers(R({"nonfinite_outputs": 3})) == 3 and not_numbers(R({"unrankable_outputs": 2})) == 2
    assert not_numbers(R({"nonfinite_outputs": None})) == 0


def test_two_folders_that_read_the_same_get_a_short_key_each():
    # two folders named imagenet with 50,000 images, told apart by their content keys: sha256(str(key))[:6]
    a, b = rec(dataset_key="k1"), rec(dataset="/other/imagenet", dataset_key="k2")
    cols = identity_columns([a, b])
    assert [h for h, _ in cols] == ["dataset"]
    assert [cols[0][1](r) for r in (a, b)] == ["imagenet (50000 img) [f07e1f]", "imagenet (50000 img) [507292]"]
    c = rec(dataset="/x/demo", dataset_key="k3", images=20)  # reads differently: no key added
    cols = identity_columns([a, b, c])
    assert [cols[0][1](r) for r in (a, b, c)] == ["imagenet (50000 img) [f07e1f]", "imagenet (50000 img) [507292]",
                                                  "demo (20 img)"]
    # three folders reading the same: each its key
    d = rec(dataset="/third/imagenet", dataset_key="k4")
    assert len({identity_columns([a, b, d])[0][1](r) for r in (a, b, d)}) == 3
    # without content keys the folder tells them apart
    e, f = rec(dataset_key=None, dataset="/a/one"), rec(dataset_key=None, dataset="/b/two")
    cols = identity_columns([e, f])
    assert [h for h, _ in cols] == ["dataset"] and [cols[0][1](r) for r in (e, f)] == ["one (50000 img)",
                                                                                         "two (50000 img)"]
    # weights that read the same ("w") with different ids
    g, h = rec(weights="w", weights_id="id-a"), rec(weights="w", weights_id="id-b")
    cols = identity_columns([g, h])
    assert [hd for hd, _ in cols] == ["weights"] and [cols[0][1](r) for r in (g, h)] == ["w [db1ba9]", "w [4f206f]"]


def test_a_rate_without_a_figure_is_never_marked_unstable():
    loaded = R(host_load_1m=5.0, host_cores=2)
    assert rate(loaded, []) == "-"
    assert rate(loaded.with_fields(images_per_s=3.0), []) == "3.0 (unstable)"


def test_the_host_load_counts_only_against_a_known_core_count():
    assert unstable_reason(R({"host_load_1m": 3.0, "host_cores": 0, "latency_all_cv_percent": 1.0}), []) is None
    assert unstable_reason(R({"host_load_1m": 1.5, "host_cores": 1}), []) == "host loaded (load average 1.5 on 1 cores)"


def test_percentiles_of_a_study_name_each_rows_network():
    rows = cells(percentile_table([r for r in _study_records() if r.role == "timing"]))
    assert [r[:3] for r in rows[1:]] == [
        ["resnet18", "Vanilla", "1"], ["resnet18", "Vanilla", "256"], ["resnet18", "ONNX Runtime int8", "1"],
        ["resnet18", "ONNX Runtime int8", "256"], ["mobilenet_v2", "Vanilla", "1"], ["mobilenet_v2", "Vanilla", "256"]]


def test_study_order_sorts_batch_sizes_whatever_the_input_order():
    recs = [rec(batch_size=256), rec(batch_size=8), rec(batch_size=1)]
    assert [r.batch_size for r in study_order(recs)] == [1, 8, 256]
    assert [r.batch_size for r in study_order([rec(batch_size=1), rec(batch_size=None)])] == [None, 1]


# --- the reference and the top-1 drops -------------------------------------------------------------------------

def test_images_key_names_network_weights_and_images():
    assert images_key(rec(weights_id="w-1"))[:4] == ("resnet18", "w-1", "k1", 50000)
    assert images_key(rec(dataset_key=None, images=20))[:4] == ("resnet18", "torchvision", "/data/imagenet/", 20)
    assert images_key(rec()) != images_key(rec(env={"torch": "2.1"}))  # and the environment (issue 40)


def test_the_reference_is_pytorch_fp32_with_no_options_graph_calibration_or_synchronised_gpu_run():
    assert is_reference(rec())
    assert is_reference(rec(mode="pipelined", device="cuda:0"))
    assert is_reference(rec(mode="sync", device="cpu")) and is_reference(rec(mode="sync"))
    assert not is_reference(rec(mode="sync", device="cuda:0"))
    assert not is_reference(rec(options="channels_last"))
    assert not is_reference(rec(cuda_graph=True))
    assert not is_reference(rec(calib_method="entropy"))
    assert not is_reference(rec(precision="fp16")) and not is_reference(rec(backend="onnxrt"))


def test_top1_drops_leave_out_failed_records_and_other_kinds():
    recs = [rec(top1=70.0), rec(backend="onnxrt", top1=67.0),
            rec(top1=10.0, error="boom", batch_size=8),  # a failed reference never stands in
            rec(kind="compare", backend="onnxrt", precision="fp16", top1=1.0)]
    out = top1_drops(recs)
    assert [(r.backend, r.kind, d) for r, d in out] == [("torch", "validate", 0.0),
                                                                  ("onnxrt", "validate", 3.0)]


def _gate_records():
    ref = [rec(top1=70.0, batch_size=bs, setup_key="ref") for bs in (1, 256)]
    over = [rec(backend="onnxrt", precision="int8", top1=60.0, batch_size=bs, setup_key="a") for bs in (1, 256)]
    # same label, another setup (synchronised on the CPU): its own row of the gate
    sync = [rec(backend="onnxrt", precision="int8", top1=65.0, mode="sync", setup_key="b")]
    nan = [rec(backend="onnxrt", precision="fp16", top1=69.0, nonfinite_outputs=2, batch_size=bs, setup_key="c")
           for bs in (1, 256)]
    bare = rec(backend="tensorrt", precision="int8", top1=50.0)  # no setup key: its label stands for it
    return ref + over + sync + nan + [bare]


def test_the_gate_lists_each_setup_once_with_not_numbers_first():
    out = over_top1_drop(_gate_records(), 2.0)
    assert [(r.backend, r.precision, r.setup_key, r.batch_size, d) for r, d in out] == [
        ("onnxrt", "int8", "a", 1, 10.0), ("onnxrt", "int8", "b", 1, 5.0), ("onnxrt", "fp16", "c", 1, None),
        ("tensorrt", "int8", None, 1, 20.0)]


def test_the_gate_is_strictly_more_than_the_drop_allowed():
    recs = [rec(top1=1e-9), rec(backend="onnxrt", top1=0.0)]  # a drop of exactly 0 + 1e-9 points
    assert top1_drops(recs)[1][1] == 0.0 + 1e-9
    assert over_top1_drop(recs, 0.0) == []
    assert cells(worth_it_markdown(recs, max_drop=0.0))[2][-1] == "ok"
    assert cells(worth_it_markdown(recs, max_drop=-1e-9))[2][-1] == "OVER"


# --- "is TensorRT worth it?" -----------------------------------------------------------------------------------

def _unsteady(network="resnet18"):
    """Latency CVs: at batch 1 ONNX Runtime's (12 %) is far above PyTorch's (2 %); at 256 it is the other way."""
    out = []
    for backend, precision, cvs in (("torch", "fp32", (2.0, 12.0)), ("onnxrt", "fp16", (12.0, 2.0))):
        for bs, cv in zip((1, 256), cvs):
            out.append(rec(network=network, backend=backend, precision=precision, batch_size=bs, top1=70.0,
                           images_per_s=100.0 * bs if backend == "torch" else 200.0 * bs,
                           latency_model_p50=4.0 if backend == "torch" else 1.0, latency_model_p99=5.0,
                           latency_all_cv_percent=cv))
    return out


def test_side_by_side_marks_a_row_unstable_against_the_rows_of_its_own_batch_size():
    rows = cells(side_by_side_markdown("resnet18", _unsteady()))
    assert [r[:3] for r in rows[1:]] == [["Vanilla", "100.0", "25600.0 (unstable)"],
                                         ["ONNX Runtime fp16", "200.0 (unstable)", "51200.0"]]


def test_worth_it_marks_the_speed_ups_of_unstable_rows_per_batch_size():
    rows = cells(worth_it_markdown(_unsteady()))
    assert rows[1:] == [
        ["resnet18", "Vanilla", "25600.0 (unstable)", "1.00x (unstable)", "4.000", "1.00x", "70.00", "+0.00", "-"],
        ["resnet18", "ONNX Runtime fp16", "51200.0", "2.00x (unstable)", "1.000", "4.00x (unstable)", "70.00",
         "+0.00", "-"]]


def test_worth_it_text_and_gate_marks():
    recs = _study_records() + [
        rec(network="resnet18", backend="onnxrt", precision="fp16", batch_size=bs, top1=69.0, images_per_s=500.0,
            latency_model_p50=1.0, nonfinite_outputs=1, setup_key="s-fp16", weights_id="w-resnet18") for bs in (1, 256)]
    recs += [rec(network="vgg", backend="tensorrt", precision="int8", batch_size=1, top1=60.0, images_per_s=5.0)]
    text = worth_it_markdown(recs, max_drop=3.0)
    assert text.splitlines()[:3] == [
        "# Is TensorRT worth it? Every network", "",
        "Largest and smallest batch of each network; \"x Vanilla\" is how many times faster than Vanilla (PyTorch "
        "eager at fp32) a row is, in images/s at the largest batch and in latency at the smallest (above 1: faster); "
        "the top-1 drop is in points below Vanilla on the same images."]
    rows = cells(text)
    assert [(r[0], r[1], r[-1]) for r in rows[1:]] == [
        ("mobilenet_v2", "Vanilla", "ok"), ("resnet18", "Vanilla", "ok"), ("resnet18", "ONNX Runtime fp16", "NaN"),
        ("resnet18", "ONNX Runtime int8", "ok"), ("vgg", "TRT int8", "no reference")]  # vgg: no PyTorch fp32 row to judge it by: said
    assert rows[3][6:9] == ["69.00 (NaN/Inf on 1 img)", "+1.00", "-"]  # no agreement recorded
    assert rows[5] == ["vgg", "TRT int8", "5.0", "-", "-", "-", "60.00", "-", "-", "no reference"]
    exact = worth_it_markdown([rec(top1=70.0), rec(backend="onnxrt", top1=67.5)], max_drop=2.5)
    assert cells(exact)[2][-1] == "ok"  # a drop of exactly the allowed points passes


def test_worth_it_rows_measured_at_one_batch_size_only():
    recs = [rec(batch_size=1, top1=70.0, images_per_s=100.0, latency_model_p50=4.0),  # the reference: batch 1 only
            rec(backend="onnxrt", batch_size=1, top1=70.0, images_per_s=150.0, latency_model_p50=2.0),
            rec(backend="onnxrt", batch_size=256, top1=70.0, images_per_s=900.0, latency_model_p50=3.0),
            rec(backend="tensorrt", precision="fp16", batch_size=256, top1=70.0, images_per_s=1800.0),
            rec(backend="tensorrt", precision="int8", batch_size=1, top1=70.0, latency_model_p50=1.0)]  # no rate
    rows = cells(worth_it_markdown(recs))
    assert rows[1:] == [
        ["resnet18", "Vanilla", "-", "-", "4.000", "1.00x", "70.00", "+0.00", "-"],
        ["resnet18", "ONNX Runtime fp32", "900.0", "-", "2.000", "2.00x", "70.00", "+0.00", "-"],
        ["resnet18", "TRT fp16", "1800.0", "-", "-", "-", "70.00", "+0.00", "-"],
        ["resnet18", "TRT int8", "-", "-", "1.000", "4.00x", "70.00", "+0.00", "-"]]
    no_rate = [rec(batch_size=256, top1=70.0, images_per_s=100.0),
               rec(backend="onnxrt", batch_size=256, top1=70.0)]
    assert cells(worth_it_markdown(no_rate))[2][2:4] == ["-", "-"]


def test_worth_it_agreement_from_the_setups_accuracy_pass_never_a_failed_or_other_record():
    recs = _study_records()
    acc = [r for r in recs if r.role == "accuracy"]
    recs = acc + [r for r in recs if r.role != "accuracy"]  # the accuracy passes first: timing rows carry none
    recs.append(rec(network="resnet18", backend="onnxrt", precision="int8", batch_size=256, top1=1.0, role="accuracy",
                    setup_key="s-int8", weights_id="w-resnet18", agree_top1_percent=10.0, error="boom"))
    recs.append(rec(kind="compare", network="resnet18", backend="onnxrt", precision="fp16", batch_size=1))
    rows = cells(worth_it_markdown(recs))
    assert [(r[0], r[1], r[8]) for r in rows[1:]] == [("mobilenet_v2", "Vanilla", "100.00"),
                                                      ("resnet18", "Vanilla", "100.00"),
                                                      ("resnet18", "ONNX Runtime int8", "96.25")]
    # records without a setup key: the group's own record that holds the agreement
    bare = [rec(batch_size=1, top1=70.0, images_per_s=10.0),
            rec(batch_size=256, top1=70.0, images_per_s=20.0, agree_top1_percent=100.0),
            rec(backend="onnxrt", batch_size=1, top1=69.0, images_per_s=30.0),
            rec(backend="onnxrt", batch_size=256, top1=69.0, images_per_s=40.0, agree_top1_percent=97.5)]
    assert [r[8] for r in cells(worth_it_markdown(bare))[1:]] == ["100.00", "97.50"]


# --- Not measured ------------------------------------------------------------------------------------------------

def test_not_measured_heading_and_a_job_without_batch_size_or_role():
    text = not_measured_markdown([rec(batch_size=None, role=None, job_key="j", error="boom")])
    assert text.splitlines()[0] == "## Not measured"
    assert cells(text)[1:] == [["resnet18", "torch fp32", "run", "boom"]]  # no batch size: none shown (not "bs0")


# --- the terminal's width ---------------------------------------------------------------------------------------

def _wide():
    r = rec(network="efficientnet_lite0", images_per_s=27.2, top1=85.0, top5=95.0, latency_all_mean=29.562,
            latency_all_max=48.87, latency_model_mean=18.644, latency_model_max=24.726, size_mb=18.7, layers=94,
            params=4631006)
    return results_table([r, r.with_fields(backend="onnxrt")])


def test_fit_terminal_stops_as_soon_as_the_table_fits_exactly():
    full = _wide()
    one_less = fit_terminal(full, max(map(len, full.splitlines())) - 1)
    assert "parameters" not in cells(one_less)[0] and "layers" in cells(one_less)[0]
    width = max(len(ln) for ln in one_less.splitlines() if ln.startswith("|"))
    exact = fit_terminal(full, width)
    assert cells(exact)[0] == cells(one_less)[0] and "layers" in cells(exact)[0]
    assert exact.endswith(f"(to fit {width} columns, left out: parameters; every column is in the report)")


def test_fit_terminal_wraps_its_note_at_the_width_and_never_under_40():
    text = fit_terminal(_wide(), 80)
    assert [ln for ln in text.splitlines() if not ln.startswith("|")] == [
        "(to fit 80 columns, left out: parameters, layers, top-5 (%), size (MiB),",
        "Latency-all mean / max (ms), network (each row's is efficientnet_lite0), batch",
        "(each row's is 1), Latency-model max; every column is in the report)"]
    one_row = table(["network", "zz"], [["r", "q" * 45]])  # a single row: its network is the row's
    assert fit_terminal(one_row, 10).splitlines()[3:] == ["(to fit 10 columns, left out: network",
                                                             "(each row's is r); every column is in",
                                                             "the report)"]


def test_fit_terminal_keeps_what_it_cannot_narrow():
    assert fit_terminal("x" * 30, 20) == "x" * 30  # plain text: no table to narrow
    two = compose(table(["a"], [["b" * 30]]), table(["c"], [["d" * 30]]))
    assert fit_terminal(two, 20) == str(two)
    nothing_to_drop = table(["alpha", "beta"], [["a" * 30, "b" * 10]])
    assert fit_terminal(nothing_to_drop, 20) == str(nothing_to_drop)  # nothing may go: no empty "left out" line
    assert fit_terminal(compose(), 0) == ""
    # the model latency keeps its mean: the text before " / ", an empty cell stays empty
    lat = table(["Latency-model mean / max (ms)", "x"], [["1.5 ms / 2.0 ms", "y" * 40], ["", "z"]])
    assert cells(fit_terminal(lat, 50))[1:] == [["1.5 ms", "y" * 40], ["", "z"]]
