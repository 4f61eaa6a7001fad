"""The report's comparison and bookkeeping text drawn from records, sentence by sentence and cell by cell: the line
that says how many records were read and why any is not a row (records_read), which comparison records count
(latest_compares) and how they are grouped into one table per reference (compare_groups), the row labels of a
comparison record (compare_labels, for records with and without their own "options"), one comparison's document
(compare_doc / compare_markdown: the NaN/Inf warning, the title, old records without some figures, the top-10
example), the several-runner columns table, and the order of the --profile sections."""
from __future__ import annotations

from tests.report.test_tables import cells, from_header
from tests.report import R
from utils.measure.compare import CompareStats
from utils.report.report import records_read
from utils.report.sections.compare_tables import compare_columns_markdown, compare_doc, compare_groups, compare_labels, compare_markdown
from utils.report.sections.inspect_tables import profile_markdown
from utils.report.select import latest_compares
from tests.report import as_read

records_read, compare_groups, compare_labels, profile_markdown, latest_compares = map(
    as_read, (records_read, compare_groups, compare_labels, profile_markdown, latest_compares))


def skeleton(text: str) -> list:
    """The lines of a document that are not table rows: headings, sentences and the blank lines between."""
    return [ln for ln in text.splitlines() if not ln.startswith("|")]


def _val(error=None, **kw):
    r = {"record_version": 2, "kind": "validate", "network": "resnet18", "backend": "torch", "precision": "fp32", "batch_size": 1,
         "error": error}
    r.update(kw)
    return r


def _cmp(backend="onnxrt", precision="fp16", **kw):
    r = {"record_version": 2, "kind": "compare", "network": "net", "weights": "w", "reference": "torch-fp32", "backend": backend,
         "precision": precision, "options": "", "inputs_source": "random (seed 0)", "dataset": None, "inputs": 20,
         "batch_size": 4, "rtol": 1e-3, "atol": 1e-8, "rank_mae": [0.1], "rank_logit_mae": [1.0],
         "rank_class_diff_percent": [5.0], "isclose_percent": 99.0, "top1_agreement_percent": 95.0,
         "top5_overlap_percent": 97.5, "max_abs_error": 0.25, "flips": 1, "time": "2026-11-29T04:00:00+00:00"}
    r.update(kw)
    return r


# --- records_read: the report's first line ----------------------------------------------------------------------

REPLACED = "replaced by a newer record of the same setup"
NOT_MEASURED = "; a failed or skipped job that no later record measured is listed under Not measured"


def test_records_read_counts_every_record_and_says_why_any_is_not_a_row():
    validations = ([_val() for _ in range(9)] + [_val("RuntimeError: out of memory") for _ in range(2)]
                   + [_val("skipped: TensorRT is not installed") for _ in range(3)])
    compares = [_cmp() for _ in range(3)] + [_cmp(error="not run: no GPU")]
    other = [R(kind="study", error="skipped: elsewhere"), R(kind="other", error="boom")]  # neither: not counted
    line = records_read(validations + compares + other, 5, 1)
    assert line == (f"14 validation (5 shown; left out: 4 {REPLACED} (or an accuracy pass folded into its timed row), "
                    f"2 failed, 3 skipped) and 4 comparison (1 shown; left out: 2 {REPLACED}, 1 failed) records"
                    + NOT_MEASURED)


def test_records_read_with_one_of_each_and_with_nothing_left_out():
    one_each = [_val(), _val(), _val("boom"), _val("skipped: no GPU"), _cmp(), _cmp(error="skipped: no GPU")]
    assert records_read(one_each, 1, 0) == (
        f"4 validation (1 shown; left out: 1 {REPLACED} (or an accuracy pass folded into its timed row), 1 failed, "
        f"1 skipped) and 2 comparison (0 shown; left out: 1 {REPLACED}, 1 skipped) records" + NOT_MEASURED)
    # every record a row: nothing is left out, no zero counts are named, and Not measured is not pointed at
    assert records_read([_val(), _val(batch_size=8), _cmp()], 2, 1) == \
        "2 validation (2 shown) and 1 comparison (1 shown) records"
    assert records_read([], 0, 0) == "0 validation (0 shown) and 0 comparison (0 shown) records"


def test_records_read_points_at_not_measured_only_for_a_failed_validation():
    # a failed comparison is counted, but it is no job of the Not measured table
    assert records_read([_val(), _cmp(), _cmp(error="RuntimeError: boom")], 1, 1) == \
        "1 validation (1 shown) and 2 comparison (1 shown; left out: 1 failed) records"
    assert records_read([_val("skipped: no GPU")], 0, 0) == \
        "1 validation (0 shown; left out: 1 skipped) and 0 comparison (0 shown) records" + NOT_MEASURED
    # an error that only says "skipped" later is a failure, and "Skipped:" is not the study's word
    assert records_read([_val("not run: skipped: no GPU"), _val("Skipped: x")], 0, 0) == \
        "2 validation (0 shown; left out: 2 failed) and 0 comparison (0 shown) records" + NOT_MEASURED


# --- which comparison records count, and how they are grouped ---------------------------------------------------

def test_another_tolerance_is_another_comparison():
    base = _cmp()
    assert latest_compares([base, dict(base, time="t2")]) == [R(dict(base, time="t2"))]
    for field, value in (("rtol", 1e-2), ("atol", 1e-5)):
        pair = [base, dict(base, **{field: value})]
        assert latest_compares(pair) == [R(r) for r in pair], field
    rtol_only, atol_only = dict(base, rtol=1e-2, atol=None), dict(base, rtol=None, atol=1e-2)
    assert len(latest_compares([rtol_only, atol_only])) == 2


def test_one_columns_table_per_reference():
    recs = [_cmp("onnxrt", "fp16"), _cmp("onnxrt", "int8"),
            _cmp("onnxrt", "fp16", reference="torch-fp16", isclose_percent=50.0),
            _cmp("onnxrt", "int8", reference="torch-fp16", isclose_percent=60.0)]
    tables = compare_groups(recs)
    assert [t.splitlines()[0] for t in tables] == ["## net: comparisons against Vanilla (20 inputs)",
                                                   "## net: comparisons against Vanilla fp16 (20 inputs)"]
    assert from_header(tables[1], "|  ")[:2] == [["", "ONNX Runtime fp16", "ONNX Runtime int8"],
                                                ["isclose (%)", "50.00", "60.00"]]
    # one runner against each of two references: no table of several runners
    assert compare_groups([_cmp("onnxrt", "fp16"), _cmp("onnxrt", "int8", reference="torch-fp16")]) == []


def test_the_columns_table_counts_each_runners_nan_outputs():
    text = compare_columns_markdown([("ONNX Runtime fp16", _cmp(other_nonfinite=3)),
                                       ("TRT fp16", _cmp(other_nonfinite=0)), ("TRT int8", _cmp())], "Vanilla", "net")
    summary = from_header(text, "|  ")
    assert summary[0] == ["", "ONNX Runtime fp16", "TRT fp16", "TRT int8"]
    assert summary[5] == ["NaN/Inf outputs", "3", "0", "0"]


# --- the labels of a comparison record --------------------------------------------------------------------------

def test_comparison_labels_from_the_records_own_options():
    assert compare_labels(_cmp("onnxrt", "int8", reference="torch-fp16", options="cuda")) == \
        ("Vanilla fp16", "ONNX Runtime int8 (cuda)")
    assert compare_labels(_cmp("tensorrt", "int8", reference="tensorrt-fp16", options="static")) == \
        ("TRT fp16", "TRT int8 (static)")
    # the record says it had no options: what the runner reported beside it is not read
    assert compare_labels(_cmp("onnxrt", "int8", options="", other_facts={"options": "cpu"})) == \
        ("Vanilla", "ONNX Runtime int8")
    assert compare_labels(_cmp("onnxrt", "int8", options="cuda", other_facts={"options": "cpu"})) == \
        ("Vanilla", "ONNX Runtime int8 (cuda)")


def test_a_reference_whose_backend_name_holds_a_dash():
    """A backend added with registry.register() may be named "my-trt": the reference "my-trt-fp16" is that backend at
    fp16 (the precision is after the last dash: no precision name holds one), not backend "my" at "trt-fp16"."""
    from utils.report.select import row_label

    ref, _ = compare_labels(_cmp("onnxrt", "int8", reference="my-trt-fp16"))
    assert ref == row_label(R({"backend": "my-trt", "precision": "fp16", "options": ""})) and "trt-fp16" not in ref


def test_comparison_labels_of_records_written_before_they_said_their_options():
    old = {k: v for k, v in _cmp("onnxrt", "int8").items() if k != "options"}
    assert compare_labels(dict(old, other_facts={"options": "cpu"})) == ("Vanilla", "ONNX Runtime int8 (cpu)")
    assert compare_labels(dict(old, options=None, other_facts={"options": "cpu"})) == \
        ("Vanilla", "ONNX Runtime int8 (cpu)")
    assert compare_labels(dict(old, other_facts={"options": None})) == ("Vanilla", "ONNX Runtime int8")
    assert compare_labels(dict(old, other_facts=None)) == ("Vanilla", "ONNX Runtime int8")
    assert compare_labels(old) == ("Vanilla", "ONNX Runtime int8")


# --- one comparison's document ----------------------------------------------------------------------------------

ADVICE = ("Outputs that are not numbers: fp16 overflows where fp32 does not; try bf16 (fp32's range), fp32 inputs and "
          "outputs (drop --fp16_io), or fp32.")


def test_the_nan_warning_names_each_side_and_the_finite_inputs():
    s = _cmp(inputs=8, finite_inputs=5, other_nonfinite=3, ref_nonfinite=1, rtol=1e-5, atol=1e-8, isclose_percent=40.0)
    text = compare_doc(s, "Vanilla", "TRT fp16", "resnet18")
    assert skeleton(text)[:5] == [
        "## Comparisons: resnet18: TRT fp16 against Vanilla (8 inputs)", "",
        "**TRT fp16 gave NaN or Inf on 3 of 8 inputs and Vanilla gave NaN or Inf on 1 of 8 inputs**: the errors "
        "below are over the 5 inputs finite on both sides; its top-1 there is none. " + ADVICE, "",
        "Output values equal under numpy.isclose (rtol=1e-05, atol=1e-08): **40.00 %**"]
    other_only = compare_doc(dict(s, ref_nonfinite=0), "Vanilla", "TRT fp16")
    assert skeleton(other_only)[:3] == [
        "## Comparisons: TRT fp16 against Vanilla (8 inputs)", "",
        "**TRT fp16 gave NaN or Inf on 3 of 8 inputs**: the errors below are over the 5 inputs finite on both sides; "
        "its top-1 there is none. " + ADVICE]
    ref_only = compare_doc(dict(s, other_nonfinite=None), "Vanilla", "TRT fp16")
    assert skeleton(ref_only)[2] == (
        "**Vanilla gave NaN or Inf on 1 of 8 inputs**: the errors below are over the 5 inputs finite on both sides; "
        "its top-1 there is none. " + ADVICE)
    # all finite: no warning, the isclose sentence comes right after the title
    assert skeleton(compare_doc(dict(s, other_nonfinite=0, ref_nonfinite=0), "Vanilla", "TRT fp16"))[2] == \
        "Output values equal under numpy.isclose (rtol=1e-05, atol=1e-08): **40.00 %**"


def test_a_comparison_record_without_some_figures():
    """Records written before a figure existed: the cells are "-", never a traceback, and nothing is made up."""
    text = compare_doc({}, "Vanilla", "TRT fp16")
    assert skeleton(text) == ["## Comparisons: TRT fp16 against Vanilla (0 inputs)", "",
                              "Output values equal under numpy.isclose (rtol=-, atol=-): **- %**", "", ""]
    assert cells(text) == [["rank", "score MAE (logits)", "score MAE (probabilities)", "class differs (%)"]]
    assert text.blocks[-1].header == ("top-1 agreement (%)", "top-5 overlap (%)", "max abs error",
                                      "relative L2 error", "flips")
    assert text.blocks[-1].rows == (("-", "-", "-", "-", "-"),)  # (a row of dashes: cells() takes it for a rule)
    old = {k: v for k, v in _cmp(rank_mae=[0.1, 0.02, 0.003], rank_class_diff_percent=[5.0]).items()
           if k != "rank_logit_mae"}
    text = compare_doc(old, "Vanilla", "TRT fp16", "net")
    assert "Top-10" not in text
    assert cells(text)[1:] == [["1", "-", "1.000e-01", "5.00"], ["2", "-", "2.000e-02", "-"],
                               ["3", "-", "3.000e-03", "-"]]
    assert skeleton(compare_doc(dict(old, example_top10=[]), "Vanilla", "TRT fp16")) == skeleton(
        compare_doc(old, "Vanilla", "TRT fp16"))


def test_the_top10_example_of_a_record():
    example = [{"rank": 1, "ref_score": 0.912345678, "ref_class": 0, "other_score": 0.5,
                "other_class": 1, "ref_label": "0 tench", "other_label": "1 goldfish"},
               {"rank": 2, "ref_score": 0.05, "ref_class": 1, "other_score": 0.000012345, "other_class": 0}]
    text = compare_doc(_cmp(example_top10=example), "Vanilla", "TRT fp16", "net")
    assert "\n\nTop-10 of the first input:\n\n" in text
    assert cells(text, "Top-10 of the first input:") == [
        ["Vanilla score", "Vanilla label", "TRT fp16 score", "TRT fp16 label"],
        ["0.91235", "0 tench", "0.50000", "1 goldfish"],
        ["0.05000", "1", "0.00001", "0"]]  # no label recorded: the class number


def test_compare_markdown_names_the_network():
    stats = CompareStats(1e-3, 1e-8)
    text = compare_markdown(stats, "Vanilla", "TRT int8", "resnet18")
    assert text.splitlines()[0] == "## Comparisons: resnet18: TRT int8 against Vanilla (0 inputs)"
    assert compare_markdown(stats, "Vanilla", "TRT int8").splitlines()[0] == \
        "## Comparisons: TRT int8 against Vanilla (0 inputs)"


# --- the order of the --profile sections ------------------------------------------------------------------------

def _profiled(network, backend, batch_size):
    return _val(network=network, backend=backend, options="",
                profile={"batch_size": batch_size, "wall_ms_per_batch": 1.0, "host_ops_ms_per_batch": 0.5,
                         "top_ops": []})


def test_profiles_sort_by_network_then_runner_then_batch():
    text = profile_markdown([_profiled("zeta", "onnxrt", 1), _profiled("alpha", "torch", 1),
                               _profiled("alpha", "torch", 4), _profiled("alpha", "torch", None)])
    assert [r[:3] for r in cells(text)[1:]] == [["alpha", "Vanilla", "-"], ["alpha", "Vanilla", "1"],
                                               ["alpha", "Vanilla", "4"], ["zeta", "ONNX Runtime fp32", "1"]]
    assert [ln for ln in text.splitlines() if ln.startswith("###")] == [
        "### Top operators: Vanilla, batch None (per batch)", "### Top operators: Vanilla, batch 1 (per batch)",
        "### Top operators: Vanilla, batch 4 (per batch)", "### Top operators: ONNX Runtime fp32, batch 1 (per batch)"]
