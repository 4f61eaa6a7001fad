"""Markdown tables drawn from records only, in the original project's layout, and the comparison tables.

Usage:
    print(results_table(records))
    text = summary_markdown("resnet50", records)   # one section per batch size
    text = compare_markdown(stats, "torch-fp32", "onnxrt-int8")
"""
from __future__ import annotations

import csv
import io
import math
from collections import defaultdict
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence, Tuple

from utils.backends.registry import BACKENDS, PRECISIONS, REFERENCE_RUNNER, SIDE_BY_SIDE_ROWS, row_label
from utils.measure.compare import CompareStats
from utils.measure.scenarios import SCENARIOS
from utils.report.doc import Doc, Table, compose, strong, table


def _fmt(v: Any, digits: int = 2) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    if isinstance(v, float):
        return f"{v:.{digits}f}"
    if isinstance(v, int) and abs(v) >= 10000:
        return f"{v:,}"
    return str(v)


def markdown(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> Doc:
    """A table (utils.report.doc): GitHub Markdown with columns padded to line up in a terminal (tabulate), and
    escaped HTML in the report; cells formatted by _fmt."""
    return table(header, [[_fmt(c) for c in row] for row in rows])


MAIN_HEADER = ["network", "backend", "batch", "Latency-all mean / max (ms)", "Latency-model mean / max (ms)",
               "images/s", "size (MiB)", "top-1 (%)", "top-5 (%)", "layers", "parameters"]
RANDOM_WEIGHTS = "random weights"


def size_mib(r: Dict[str, Any]) -> str:
    """Size in MiB (2**20 bytes), as the original printed it; records before 2026-11-29 kept MB (10**6 bytes)."""
    if r.get("size_mib") is not None:
        return _fmt(float(r["size_mib"]), 2)
    return _fmt(float(r["size_mb"]) * 1e6 / 2**20, 2) if r.get("size_mb") is not None else "-"


def random_weights(r: Dict[str, Any]) -> bool:
    return str(r.get("weights") or "").startswith("random")


def not_numbers(r: Dict[str, Any]) -> int:
    """How many images of a record gave outputs that are not numbers (NaN/Inf) or do not rank (all equal)."""
    return int(r.get("nonfinite_outputs") or 0) + int(r.get("unrankable_outputs") or 0)


def accuracy(r: Dict[str, Any], key: str) -> str:
    """top-1 or top-5 of a record, marked where the network had random weights (the figure measures nothing) and
    where outputs were not numbers (those images count as wrong)."""
    v = r.get(key)
    if v is None:
        return "-"
    marks = [RANDOM_WEIGHTS] * random_weights(r)
    if r.get("nonfinite_outputs"):
        marks.append(f"NaN/Inf on {r['nonfinite_outputs']} img")
    if r.get("unrankable_outputs"):
        marks.append(f"flat on {r['unrankable_outputs']} img")
    return f"{_fmt(v)} ({'; '.join(marks)})" if marks else _fmt(v)


def dataset_of(r: Dict[str, Any]) -> str:
    """Which images a record measured: the folder's name and image count (its content key tells folders apart)."""
    name = str(r.get("dataset") or "?").rstrip("/").rsplit("/", 1)[-1]
    return f"{name} ({r['images']} img)" if r.get("images") is not None else name


def _distinct(records: Sequence[Dict[str, Any]], identity: Callable[[Dict[str, Any]], Any],
              shown: Callable[[Dict[str, Any]], str], key: Callable[[Dict[str, Any]], Any]
              ) -> Callable[[Dict[str, Any]], str]:
    """A column's text per record: `shown`, with a short key added where two different identities would read
    the same (two folders named imagenet with 50,000 images each are two rows, never one)."""
    names: Dict[str, set] = defaultdict(set)
    for r in records:
        names[shown(r)].add(identity(r))

    def text(r: Dict[str, Any]) -> str:
        name = shown(r)
        if len(names[name]) < 2:
            return name
        import hashlib

        return f"{name} [{hashlib.sha256(str(key(r)).encode()).hexdigest()[:6]}]"

    return text


def identity_columns(records: Sequence[Dict[str, Any]]) -> List[Tuple[str, Callable[[Dict[str, Any]], str]]]:
    """The columns a table needs so that it never puts different datasets or weights side by side unlabelled:
    "dataset" where the records measured different images, "weights" where they ran different weights; each
    column's text tells apart identities that read the same (rows are grouped by these texts)."""
    cols: List[Tuple[str, Callable[[Dict[str, Any]], str]]] = []

    def data_id(r: Dict[str, Any]) -> Any:
        return (r.get("dataset_key") or r.get("dataset"), r.get("images"))

    def weights_key(r: Dict[str, Any]) -> Any:
        return r.get("weights_id") or r.get("weights")

    if len({data_id(r) for r in records}) > 1:
        cols.append(("dataset", _distinct(records, data_id, dataset_of, data_id)))
    if len({weights_key(r) for r in records}) > 1:
        cols.append(("weights", _distinct(records, weights_key, lambda r: str(r.get("weights")), weights_key)))
    return cols


# A row's timing is marked unstable (its images/s and every speed-up computed from it) when the host was loaded
# while it was timed (1-minute load average above the core count), or when its latency CV is far above its
# peers' (more than UNSTABLE_PEER_FACTOR x their median and above UNSTABLE_CV_FLOOR %), or above
# UNSTABLE_CV_ALWAYS % whatever the peers. trtexec only warns above 2.5 %; these rows are the ones not to trust.
UNSTABLE_CV_FLOOR = 10.0
UNSTABLE_PEER_FACTOR = 3.0
UNSTABLE_CV_ALWAYS = 50.0
UNSTABLE = " (unstable)"
UNSTABLE_NOTE = ("(unstable): the row's timing is not to be trusted: the host was loaded while it was timed (load "
                 "average above the core count), or its latency varied far more than its peers' (CV above "
                 f"{UNSTABLE_PEER_FACTOR:g}x their median and {UNSTABLE_CV_FLOOR:g} %, or above "
                 f"{UNSTABLE_CV_ALWAYS:g} %); speed-ups computed from it are marked too.")


def unstable_reason(r: Dict[str, Any], peers: Sequence[Dict[str, Any]]) -> Optional[str]:
    """Why the row's timing is not to be trusted, or None (see UNSTABLE_NOTE)."""
    load, cores = r.get("host_load_1m"), r.get("host_cores")
    if isinstance(load, (int, float)) and isinstance(cores, int) and cores > 0 and load > cores:
        return f"host loaded (load average {load:.1f} on {cores} cores)"
    cv = r.get("latency_all_cv_percent")
    if not isinstance(cv, (int, float)) or not math.isfinite(cv):
        return None
    if cv > UNSTABLE_CV_ALWAYS:
        return f"latency CV {cv:.1f} %"
    others = sorted(float(p["latency_all_cv_percent"]) for p in peers if p is not r
                    and isinstance(p.get("latency_all_cv_percent"), (int, float)))
    if others:
        mid = len(others) // 2
        median = others[mid] if len(others) % 2 else (others[mid - 1] + others[mid]) / 2
        if cv > max(UNSTABLE_CV_FLOOR, UNSTABLE_PEER_FACTOR * median):
            return f"latency CV {cv:.1f} % against its peers' median {median:.1f} %"
    return None


def _rate(r: Dict[str, Any], peers: Sequence[Dict[str, Any]]) -> str:
    """images/s, marked where the row's timing is unstable."""
    text = _fmt(r.get("images_per_s"), 1)
    return text + UNSTABLE if text != "-" and unstable_reason(r, peers) else text


def results_table(records: Sequence[Dict[str, Any]]) -> str:
    """The original's columns, one row per validation record (and dataset / weights where they differ)."""
    extra = identity_columns(records)
    rows = []
    for r in records:
        rows.append([r.get("network"), row_label(r), r.get("batch_size"), *[f(r) for _, f in extra],
                     f"{_fmt(r.get('latency_all_mean'), 3)} / {_fmt(r.get('latency_all_max'), 3)}",
                     f"{_fmt(r.get('latency_model_mean'), 3)} / {_fmt(r.get('latency_model_max'), 3)}",
                     _rate(r, records), size_mib(r), accuracy(r, "top1"), accuracy(r, "top5"),
                     r.get("layers"), r.get("params")])
    return markdown(MAIN_HEADER[:3] + [h for h, _ in extra] + MAIN_HEADER[3:], rows)


# what a terminal narrower than a table loses first (every column stays in table_outputs/ and the report)
TERMINAL_DROPS = ("parameters", "layers", "top-5 (%)", "size (MiB)", "Latency-all mean / max (ms)",
                  "all p50 / p90 / p99 (ms)", "all CV (%)", "timed batches", "mode", "network", "batch")
SAME_IN_EVERY_ROW = ("network", "batch")  # left out only where every row has the same (said in the note)
TERMINAL_MEANS = {"Latency-model mean / max (ms)": "model ms"}  # then the mean alone


def terminal_width() -> Optional[int]:
    """The columns of the terminal the tables go to; None when stdout is a file or a pipe (and COLUMNS is unset):
    a log keeps every column."""
    import os
    import shutil
    import sys

    if "COLUMNS" in os.environ or sys.stdout.isatty():
        return shutil.get_terminal_size().columns
    return None


def fit_terminal(doc: str, width: Optional[int]) -> str:
    """A one-table Doc as it fits `width` columns: the least telling columns left out first (TERMINAL_DROPS; the
    network only where every row has the same), then the model latency as its mean; a line says what was left
    out. As it is where it fits, or where nothing more can go."""
    if width is None or max(map(len, doc.splitlines() or [""])) <= width:
        return str(doc)
    tables = [b for b in getattr(doc, "blocks", ()) if isinstance(b, Table)]
    if len(tables) != 1:
        return str(doc)
    header, rows = list(tables[0].header), [list(r) for r in tables[0].rows]
    left_out: List[str] = []
    steps: List[Tuple[str, Optional[str]]] = [(h, None) for h in TERMINAL_DROPS] + list(TERMINAL_MEANS.items())
    for name, renamed in steps:
        if name not in header or (name in SAME_IN_EVERY_ROW and len({r[header.index(name)] for r in rows}) > 1):
            continue
        i = header.index(name)
        if renamed is None:
            left_out.append(f"{name} (each row's is {rows[0][i]})" if name in SAME_IN_EVERY_ROW and rows else name)
            del header[i]
            for r in rows:
                del r[i]
        else:
            header[i] = renamed
            for r in rows:
                r[i] = r[i].split(" / ")[0]
            left_out.append(f"{name.split(' mean')[0]} max")
        text = str(table(header, rows))
        if max(map(len, text.splitlines())) <= width:
            break
    if not left_out:  # nothing that may go is in it: as it is
        return str(doc)
    import textwrap

    return text + "\n" + textwrap.fill(f"(to fit {width} columns, left out: {', '.join(left_out)}; every column is "
                                       "in the report)", max(width, 40))


def percentile_table(records: Sequence[Dict[str, Any]]) -> str:
    several = len({r.get("network") for r in records}) > 1  # a study: say which network each row is
    header = ["network"] * several + ["backend", "batch", "mode", "model p50 / p90 / p99 (ms)",
                                      "all p50 / p90 / p99 (ms)", "model CV (%)", "all CV (%)", "timed batches"]
    rows = []
    for r in records:
        rows.append([r.get("network")] * several + [row_label(r), r.get("batch_size"), r.get("mode"),
                     " / ".join(_fmt(r.get(f"latency_model_p{q}"), 3) for q in (50, 90, 99)),
                     " / ".join(_fmt(r.get(f"latency_all_p{q}"), 3) for q in (50, 90, 99)),
                     _fmt(r.get("latency_model_cv_percent")), _fmt(r.get("latency_all_cv_percent")),
                     r.get("latency_all_batches")])
    return markdown(header, rows)


def latest_per_config(records: Sequence[Dict[str, Any]]) -> List[Dict[str, Any]]:
    """The newest record of each (network, backend, precision, batch, mode, options, dataset, weights, and a serving
    record's scenario and settings); a study's accuracy pass stands for its batch size only where no timing or
    whole-pass record of the setup does."""
    latest: Dict[Any, Dict[str, Any]] = {}
    for r in sorted(records, key=lambda r: r.get("role") != "accuracy"):  # stable: then oldest first
        if r.get("error"):
            continue
        key = (r.get("network"), row_label(r), r.get("batch_size"), r.get("mode"),
               r.get("dataset_key") or r.get("dataset"), r.get("weights_id") or r.get("weights"), serving_key(r))
        latest[key] = r
    return list(latest.values())


def is_scenario(r: Dict[str, Any]) -> bool:
    """A serving scenario's record (MLPerf LoadGen, role "scenario"): samples/s and latency under LoadGen's load, no
    timing row (it has no latency-model figures); only the served table and the serving curve draw it."""
    return r.get("role") == "scenario" or r.get("scenario") is not None


def timing_rows(records: Sequence[Dict[str, Any]]) -> List[Dict[str, Any]]:
    """The validation records the timing tables and plots draw: every one but the serving scenarios'."""
    return [r for r in records if r.get("kind") == "validate" and not is_scenario(r)]


def serving_key(r: Dict[str, Any]) -> Any:
    """What tells two serving records of one setup apart (the scenario and its settings); None for a timing row."""
    if not is_scenario(r):
        return None
    import json

    return (r.get("scenario"), json.dumps(r.get("serve_settings"), sort_keys=True, default=str))


def summary_markdown(network: str, records: Sequence[Dict[str, Any]]) -> Doc:
    """Per network: one section per batch size (rows Vanilla / TRT fp32 / ... ), then the percentiles."""
    recs = [r for r in latest_per_config(timing_rows(records))
            if r.get("network") == network]  # kind first: a comparison never hides the validation of its setup
    by_bs: Dict[Optional[int], List[Dict[str, Any]]] = defaultdict(list)
    for r in recs:
        by_bs[r.get("batch_size")].append(r)
    header = ["", "Latency-all mean / max (ms)", "Latency-model mean / max (ms)", "images/s", "size (MiB)",
              "top-1 (%)", "top-5 (%)", "layers", "parameters", "prepare (s)"]
    parts: List[Any] = [f"# {network}"]
    env = recs[0]["env"] if recs else {}
    parts.append(f"Measured on {env.get('gpu') or env.get('cpu', '?')}, torch {env.get('torch')}, "
                 f"ONNX Runtime {env.get('onnxruntime')}, TensorRT {env.get('tensorrt') or 'not installed'}"
                 + (f", TensorRT-RTX {env['tensorrt_rtx']}" if env.get("tensorrt_rtx") else "") + ".")
    for bs in sorted(by_bs, key=lambda b: b or 0):
        extra = identity_columns(by_bs[bs])
        rows = []
        for r in sorted(by_bs[bs], key=lambda r: row_sort_key(r)):
            rows.append([row_label(r), *[f(r) for _, f in extra],
                         f"{_fmt(r.get('latency_all_mean'), 3)} / {_fmt(r.get('latency_all_max'), 3)}",
                         f"{_fmt(r.get('latency_model_mean'), 3)} / {_fmt(r.get('latency_model_max'), 3)}",
                         _rate(r, by_bs[bs]), size_mib(r), accuracy(r, "top1"), accuracy(r, "top5"),
                         r.get("layers"), r.get("params"), r.get("prepare_s")])
        table = markdown(header[:1] + [h for h, _ in extra] + header[1:], rows)
        parts += [f"## Batch size {bs}", table, *([UNSTABLE_NOTE] if any(UNSTABLE in row[len(extra) + 3]
                                                                          for row in rows) else []), "Percentiles:", percentile_table(sorted(by_bs[bs], key=row_sort_key))]
    return compose(*parts)


def study_order(records: Sequence[Dict[str, Any]]) -> List[Dict[str, Any]]:
    """Network, then backend and precision in the registry's order, then batch size."""
    return sorted(records, key=lambda r: (str(r.get("network")), row_sort_key(r), row_label(r),
                                          int(r.get("batch_size") or 0)))


def row_sort_key(r: Dict[str, Any]) -> Any:
    b = list(BACKENDS).index(r["backend"]) if r.get("backend") in BACKENDS else 99
    p = PRECISIONS.index(r["precision"]) if r.get("precision") in PRECISIONS else 99
    return (b, p, str(r.get("options", "")))


def side_by_side_markdown(network: str, records: Sequence[Dict[str, Any]], small: int = 1, large: int = 256) -> Doc:
    """Is TensorRT worth it? One row per backend and precision: images/s at batch 1 and 256, latency-model
    p50/p99 at batch 1, top-1 and preparation time. Rows that were not measured say so."""
    recs = [r for r in latest_per_config(timing_rows(records))
            if r.get("network") == network]  # kind first: a comparison never hides the validation of its setup
    extra = identity_columns(recs)
    groups: Dict[Tuple[str, ...], Dict[int, Dict[str, Any]]] = defaultdict(dict)
    keys: Dict[Tuple[str, ...], Any] = {}
    for r in recs:  # one row per label, and per dataset / weights where those differ
        key = (row_label(r), *[f(r) for _, f in extra])
        groups[key][int(r["batch_size"])] = r
        keys[key] = (r.get("backend"), r.get("precision"))
    rows = []
    for key in sorted(groups, key=lambda k: (row_sort_key(next(iter(groups[k].values()))), k)):
        by = groups[key]
        s, l_ = by.get(small), by.get(large)
        top1 = next((accuracy(r, "top1") for r in by.values() if r.get("top1") is not None), None)
        prep = max((r.get("prepare_s") or 0.0) for r in by.values())
        rows.append([*key, _rate(s, [r for r in recs if r.get("batch_size") == small]) if s else "-",
                     _rate(l_, [r for r in recs if r.get("batch_size") == large]) if l_ else "-",
                     f"{_fmt(s.get('latency_model_p50'), 3)} / {_fmt(s.get('latency_model_p99'), 3)}" if s else "-",
                     top1, _fmt(prep, 1)])
    missing = [f"{b} {p}" for b, p in SIDE_BY_SIDE_ROWS if (b, p) not in keys.values()]
    text = markdown(["backend", *[h for h, _ in extra], f"images/s @ {small}", f"images/s @ {large}",
                     f"latency-model p50 / p99 @ {small} (ms)", "top-1 (%)", "prepare (s)"], rows)
    shaky = any(UNSTABLE in str(cell) for row in rows for cell in row)
    return compose(f"# {network}: is TensorRT worth it?", text,
                   "Not measured in these records: " + ", ".join(missing) + "." if missing else None,
                   UNSTABLE_NOTE if shaky else None)


NONFINITE_ADVICE = ("outputs that are not numbers: fp16 overflows where fp32 does not; try bf16 (fp32's range), "
                    "fp32 inputs and outputs (drop --fp16_io), or fp32")


def _e(v: Any, fmt: str = ".3e") -> str:
    return "-" if v is None else format(float(v), fmt)


def compare_markdown(stats: CompareStats, ref_name: str, other_name: str, network: Optional[str] = None) -> Doc:
    """The original's "Comparisons" tables, then the dataset-wide figures."""
    return compare_doc(stats.summary(), ref_name, other_name, network)


def compare_labels(rec: Dict[str, Any]) -> Tuple[str, str]:
    """The row labels of a comparison record's reference ("torch-fp32" in the record) and other runner."""
    backend, _, precision = str(rec.get("reference") or "-").rpartition("-")  # a backend's name may hold "-"
    other = {"backend": rec.get("backend"), "precision": rec.get("precision"),
             "options": rec.get("options") if rec.get("options") is not None else
             ((rec.get("other_facts") or {}).get("options") or "")}
    return row_label({"backend": backend, "precision": precision, "options": ""}), row_label(other)


def compare_doc(s: Dict[str, Any], ref_name: str, other_name: str, network: Optional[str] = None) -> Doc:
    """The comparison tables of a summary (CompareStats.summary(), or a comparison record's fields)."""
    def label(e: Dict[str, Any], side: str) -> str:
        return str(e.get(f"{side}_label") or e[f"{side}_class"])

    inputs, finite = s.get("inputs") or 0, s.get("finite_inputs")
    bad = [(name, int(s.get(f"{side}_nonfinite") or 0)) for name, side in ((other_name, "other"), (ref_name, "ref"))]
    warn = None
    if any(n for _, n in bad):
        warn = (strong(" and ".join(f"{name} gave NaN or Inf on {n} of {inputs} inputs" for name, n in bad if n)),
                f": the errors below are over the {finite} inputs finite on both sides; its top-1 there is none. "
                f"{NONFINITE_ADVICE[0].upper()}{NONFINITE_ADVICE[1:]}.")
    title = f"## Comparisons{': ' + network if network else ''}: {other_name} against {ref_name} ({inputs} inputs)"
    ranks = s.get("rank_mae") or []
    diffs = s.get("rank_class_diff_percent") or []
    parts: List[Any] = [
        title, warn,
        (f"Output values equal under numpy.isclose (rtol={_e(s.get('rtol'), 'g')}, atol={_e(s.get('atol'), 'g')}): ",
         strong(f"{_e(s.get('isclose_percent'), '.2f')} %")),
        markdown(["rank", "score MAE (logits)", "score MAE (probabilities)", "class differs (%)"],
                 [[r + 1, _e((s.get("rank_logit_mae") or [None] * len(ranks))[r]), _e(ranks[r]),
                   _e(diffs[r] if r < len(diffs) else None, ".2f")] for r in range(len(ranks))]),
        "Top-10 of the first input:" if s.get("example_top10") else None,
        markdown([f"{ref_name} score", f"{ref_name} label", f"{other_name} score", f"{other_name} label"],
                 [[_e(e.get("ref_score"), ".5f"), label(e, "ref"), _e(e.get("other_score"), ".5f"), label(e, "other")]
                  for e in s["example_top10"]]) if s.get("example_top10") else None,
        markdown(["top-1 agreement (%)", "top-5 overlap (%)", "max abs error", "relative L2 error", "flips"],
                 [[_e(s.get("top1_agreement_percent"), ".2f"), _e(s.get("top5_overlap_percent"), ".2f"),
                   _e(s.get("max_abs_error")), _e(s.get("rel_l2_error")), s.get("flips")]])]
    if s.get("labelled"):
        parts.append(f"On {s['labelled']} labelled images: top-1 {_e(s.get('ref_top1'), '.2f')} % ({ref_name}) vs "
                     f"{_e(s.get('other_top1'), '.2f')} % ({other_name}); flips right->wrong {s.get('right_to_wrong')}, "
                     f"wrong->right {s.get('wrong_to_right')}.")
    return compose(*parts)


def flips_csv(stats: CompareStats) -> str:
    """The images whose top-1 flipped, one row each."""
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["file", "true_class", "ref_class", "ref_score", "other_class", "other_score"])
    for f in stats.flips:
        w.writerow([f["file"], "" if f["true_class"] is None else stats.label(f["true_class"]),
                    stats.label(f["ref_class"]), f"{f['ref_score']:.6f}", stats.label(f["other_class"]),
                    f"{f['other_score']:.6f}"])
    return buf.getvalue()


def compare_columns_markdown(runs: Sequence[Tuple[str, Dict[str, Any]]], ref_name: str, network: str) -> Doc:
    """The original's comparison table for several runners at once: ranks as rows, one column per runner
    (fp32 / fp16 / int8 side by side), for the score MAE on logits, on probabilities, and class differences."""
    names = [n for n, _ in runs]
    k = max(len(s.get("rank_mae") or []) for _, s in runs)

    def col(key: str, fmt: str) -> Doc:
        return markdown(["rank", *names], [[r + 1, *[_e(s[key][r], fmt) if r < len(s.get(key) or []) else "-"
                                                    for _, s in runs]] for r in range(k)])

    summary = markdown(["", *names], [
        ["isclose (%)", *[_e(s.get("isclose_percent"), ".2f") for _, s in runs]],
        ["top-1 agreement (%)", *[_e(s.get("top1_agreement_percent"), ".2f") for _, s in runs]],
        ["top-5 overlap (%)", *[_e(s.get("top5_overlap_percent"), ".2f") for _, s in runs]],
        ["max abs error", *[_e(s.get("max_abs_error")) for _, s in runs]],
        ["NaN/Inf outputs", *[s.get("other_nonfinite") or 0 for _, s in runs]],
        ["flips", *[s.get("flips") for _, s in runs]]])
    return compose(f"## {network}: comparisons against {ref_name} ({runs[0][1].get('inputs')} inputs)",
                   "Score MAE at each rank, logits:", col("rank_logit_mae", ".3e"),
                   "Score MAE at each rank, probabilities:", col("rank_mae", ".3e"),
                   "Class differs at each rank (%):", col("rank_class_diff_percent", ".2f"), summary)


def _counts(precisions: Optional[Dict[str, int]]) -> str:
    return ", ".join(f"{p} {n}" for p, n in (precisions or {}).items()) or "-"


def inspect_markdown(records: Sequence[Dict[str, Any]]) -> Doc:
    """--inspect: how many layers of each model file and engine run at each precision, and where a quantized
    file drifts from fp32 (the layers that add the most relative error); empty when nothing was inspected."""
    recs = [r for r in records if isinstance(r.get("inspect"), dict) and r["kind"] == "validate"]
    if not recs:
        return compose()
    rows: List[List[Any]] = []
    parts: List[Any] = []
    for r in recs:
        i = r["inspect"]
        onnx, engine, drift = i.get("onnx") or {}, i.get("engine") or {}, i.get("drift") or {}
        rows.append([r.get("network"), row_label(r), onnx.get("layers"), _counts(onnx.get("precisions")),
                     onnx.get("qdq_layers"), engine.get("layers"), _counts(engine.get("precisions")),
                     _fmt(drift.get("output_relative_error"), 4) if drift else i.get("note", "-")])
        if drift:
            parts += [f"### Per-layer drift: {row_label(r)} against fp32 ({drift['images']} calibration images)",
                      markdown(["layer", "op", "weight", "relative error", "added error"],
                               [[d["name"], d["op"], d.get("weight") or "", f"{d['relative_error']:.4f}",
                                 f"{d['added_error']:+.4f}"] for d in drift.get("top_added") or []])]
    head = markdown(["network", "runner", "ONNX layers", "ONNX layers by precision", "Q/DQ layers", "engine layers",
                     "engine layers by precision", "output drift (rel. L2)"], rows)
    return compose("## Inside the models (--inspect)", head, *parts)


def profile_markdown(records: Sequence[Dict[str, Any]]) -> Doc:
    """--profile: per batch, wall time beside the host's operator time and the GPU's kernel time, and the
    operators that take the most; empty when nothing was profiled."""
    recs = sorted((r for r in records if isinstance(r.get("profile"), dict)
                   and r["profile"].get("wall_ms_per_batch") is not None),
                  key=lambda r: (str(r.get("network")), row_label(r), r["profile"].get("batch_size") or 0))
    if not recs:
        return compose()
    on_gpu = any(r["profile"].get("gpu_kernels_ms_per_batch") is not None for r in recs)
    rows: List[List[Any]] = []
    parts: List[Any] = []
    for r in recs:
        p = r["profile"]
        rows.append([r.get("network"), row_label(r), p.get("batch_size"), _fmt(p.get("wall_ms_per_batch"), 3),
                     _fmt(p.get("host_ops_ms_per_batch"), 3), _fmt(p.get("gpu_kernels_ms_per_batch"), 3),
                     _fmt(p.get("host_wait_ms_per_batch"), 3)])
        parts += [f"### Top operators: {row_label(r)}, batch {p.get('batch_size')} (per batch)",
                  markdown(["operator", "calls", "self CPU (ms)", "self GPU (ms)"],
                           [[o["op"], _fmt(o["calls_per_batch"], 1), _fmt(o["self_cpu_ms_per_batch"], 3),
                             _fmt(o.get("self_gpu_ms_per_batch"), 3)] for o in (p.get("top_ops") or [])[:5]])]
    head = markdown(["network", "runner", "batch", "wall (ms)", "host in operators (ms)", "GPU kernels (ms)",
                     "host waiting (ms)"], rows)
    return compose("## Where the time goes (--profile, per batch)",
                   ("Wall time well above GPU kernel time: the host sets the pace. " if on_gpu else
                    "On the CPU the operators are the work: wall time above operator time is the framework's own "
                    "cost. ") + "Profiled batches run synchronised and carry the profiler's own cost (host time "
                   "most): read the shares; the latencies above are the timed figures.", head, *parts)


def latest_compares(records: Sequence[Dict[str, Any]]) -> List[Dict[str, Any]]:
    """The newest comparison record of each (network, weights, reference, runner, inputs): a report never shows
    a comparison that a later run of the same setup replaced."""
    latest: Dict[Any, Dict[str, Any]] = {}
    for r in records:
        key = (r.get("network"), r.get("weights"), r.get("reference"), r.get("backend"), r.get("precision"),
               str(r.get("other_facts", {}).get("options", "")), r.get("inputs_source"), r.get("dataset"),
               r.get("inputs"), r.get("batch_size"), r.get("rtol"), r.get("atol"))  # another tolerance: another question
        latest[key] = r
    return list(latest.values())


def records_read(everything: Sequence[Dict[str, Any]], shown_validations: int, shown_compares: int) -> str:
    """What the report drew from: every record read, and in one clause each why any is not a row of its own."""
    def why_left_out(kind: str, shown: int, replaced_by: str) -> str:
        recs = [r for r in everything if r.get("kind") == kind]
        skipped = sum(1 for r in recs if str(r.get("error") or "").startswith("skipped:"))
        failed = sum(1 for r in recs if r.get("error")) - skipped
        parts = [f"{n} {what}" for n, what in ((len(recs) - failed - skipped - shown, replaced_by),
                                               (failed, "failed"), (skipped, "skipped")) if n > 0]
        return f"{len(recs)} {{}} ({shown} shown" + ("; left out: " + ", ".join(parts) if parts else "") + ")"
    same = "replaced by a newer record of the same setup"
    line = (why_left_out("validate", shown_validations, same + " (or an accuracy pass folded into its timed row)")
            .format("validation") + " and " + why_left_out("compare", shown_compares, same).format("comparison")
            + " records")
    validations = [r for r in everything if r.get("kind") == "validate"]
    if any(r.get("error") for r in validations):
        line += "; a failed or skipped job that no later record measured is listed under Not measured"
    return line


def compare_groups(records: Sequence[Dict[str, Any]]) -> List[str]:
    """The original's columns table for each set of runners compared on the same inputs against the same
    reference (two or more runners), drawn from the records."""
    groups: Dict[Any, List[Dict[str, Any]]] = defaultdict(list)
    for r in latest_compares(records):
        groups[(r.get("network"), r.get("weights"), r.get("reference"), r.get("inputs_source"), r.get("dataset"),
                r.get("inputs"))].append(r)
    out = []
    for (network, _, reference, *_rest), recs in groups.items():
        if len(recs) > 1:
            recs = sorted(recs, key=lambda r: (str(r.get("backend")), PRECISIONS.index(r["precision"])
                                               if r.get("precision") in PRECISIONS else 9))
            out.append(compare_columns_markdown([(compare_labels(r)[1], r) for r in recs],
                                                compare_labels(recs[0])[0], str(network)))
    return out



def images_key(r: Dict[str, Any]) -> Any:
    """Which network, weights and images a record measured: records with the same key are compared row by row."""
    return (r.get("network"), r.get("weights_id") or r.get("weights"), r.get("dataset_key") or r.get("dataset"),
            r.get("images"))


def is_reference(r: Dict[str, Any]) -> bool:
    """The PyTorch fp32 row every other is measured against, found by its runner key (backend and precision, no
    options, no CUDA graph, no calibration, not a synchronised GPU run), never by its display label."""
    return ((r.get("backend"), r.get("precision")) == REFERENCE_RUNNER and not r.get("options")
            and not r.get("cuda_graph") and not r.get("calib_method")
            and not (r.get("mode") == "sync" and str(r.get("device", "")).startswith("cuda")))


def top1_drops(records: Sequence[Dict[str, Any]]) -> List[Tuple[Dict[str, Any], Optional[float]]]:
    """Each validation record with its top-1 drop in points below PyTorch fp32 on the same network, weights and
    images (None where that reference or a top-1 is missing)."""
    recs = [r for r in timing_rows(records) if not r.get("error")]
    refs = {images_key(r): r for r in recs if is_reference(r) and r.get("top1") is not None}
    out = []
    for r in recs:
        ref = refs.get(images_key(r))
        drop = None if ref is None or r.get("top1") is None else float(ref["top1"]) - float(r["top1"])
        out.append((r, drop))
    return out


def over_top1_drop(records: Sequence[Dict[str, Any]], max_drop: float
                   ) -> List[Tuple[Dict[str, Any], Optional[float]]]:
    """The rows whose top-1 falls more than max_drop points below their PyTorch fp32 row, and the rows whose outputs
    were not numbers on some image (drop None: they fail whatever their top-1); one per setup."""
    seen, out = set(), []
    for r, drop in top1_drops(latest_per_config(records)):
        key = (r.get("setup_key") or row_label(r), images_key(r))
        if key in seen:
            continue
        if not_numbers(r):
            seen.add(key)
            out.append((r, None))
        elif drop is not None and drop > max_drop + 1e-9:
            seen.add(key)
            out.append((r, drop))
    return out


def worth_it_markdown(records: Sequence[Dict[str, Any]], max_drop: Optional[float] = None) -> Doc:
    """Is TensorRT worth it, across networks: per network and runner, images/s at the largest batch and
    latency-model p50 at the smallest, each beside PyTorch fp32's (x times), top-1 and its drop in points, and
    how often the top-1 class agrees with PyTorch fp32's; with max_drop, the rows over it are marked."""
    every = [r for r in timing_rows(records) if not r.get("error")]
    agree = {r["setup_key"]: r for r in every if r.get("setup_key") and r.get("agree_top1_percent") is not None}
    recs = latest_per_config(every)
    drops = {id(r): d for r, d in top1_drops(recs)}
    rows = []
    for network in sorted({str(r.get("network")) for r in recs}):
        mine = [r for r in recs if r.get("network") == network]
        extra = identity_columns(mine)
        small, large = min(int(r["batch_size"]) for r in mine), max(int(r["batch_size"]) for r in mine)
        groups: Dict[Tuple[str, ...], Dict[int, Dict[str, Any]]] = defaultdict(dict)
        for r in mine:
            groups[(row_label(r), *[f(r) for _, f in extra])][int(r["batch_size"])] = r
        # each row is divided by the PyTorch fp32 row of the same weights and images (several datasets under one
        # network: each its own reference), found by runner key
        refs: Dict[Any, Dict[int, Dict[str, Any]]] = defaultdict(dict)
        for r in mine:
            if is_reference(r):
                refs[images_key(r)][int(r["batch_size"])] = r

        def times(g: Dict[int, Dict[str, Any]], bs: int, key: str, inverse: bool = False) -> str:
            ref = refs.get(images_key(next(iter(g.values()))))
            if ref is None or bs not in g or bs not in ref or not g[bs].get(key) or not ref[bs].get(key):
                return "-"
            a, b = float(g[bs][key]), float(ref[bs][key])
            peers = [r for r in mine if r.get("batch_size") == bs]
            shaky = unstable_reason(g[bs], peers) or unstable_reason(ref[bs], peers)
            return f"{(b / a if inverse else a / b):.2f}x" + (UNSTABLE if shaky else "")

        for key in sorted(groups, key=lambda k: (row_sort_key(next(iter(groups[k].values()))), k)):
            g = groups[key]
            any_rec = next(iter(g.values()))
            drop = next((drops[id(r)] for r in g.values() if drops.get(id(r)) is not None), None)
            agreed = next((agree[r["setup_key"]] for r in g.values() if r.get("setup_key") in agree), None)
            agreed = agreed or next((r for r in g.values() if r.get("agree_top1_percent") is not None), None)
            nan = any(not_numbers(r) for r in g.values())
            mark = "" if max_drop is None else "NaN" if nan else (
                "no top-1" if any_rec.get("top1") is None else "no reference") if drop is None else (
                "OVER" if drop > max_drop + 1e-9 else "ok")
            rows.append([network, " / ".join(key), _rate(g[large], [r for r in mine if r.get("batch_size") == large])
                         if large in g else "-",
                         times(g, large, "images_per_s"),
                         _fmt(g[small].get("latency_model_p50"), 3) if small in g else "-",
                         times(g, small, "latency_model_p50", inverse=True), accuracy(any_rec, "top1"),
                         "-" if drop is None else f"{drop:+.2f}",
                         _fmt(agreed.get("agree_top1_percent"), 2) if agreed else "-", *([mark] if max_drop is not None
                                                                                        else []),
                         _e(g[large].get("joules_per_image"), ".4g") if large in g else "-"])
    if not rows:
        return compose()
    head = ["network", "runner", "images/s @ largest batch", "x Vanilla", "latency-model p50 @ smallest (ms)",
            "x Vanilla (speed)", "top-1 (%)", "top-1 drop (points)", "same top-1 as Vanilla (%)"]
    if max_drop is not None:
        head.append(f"drop <= {max_drop:g}")
    if any(row[-1] != "-" for row in rows):  # energy where a GPU's counter gave it (utils/measure/energy.py)
        head.append("J / image @ largest batch")
    else:
        rows = [row[:-1] for row in rows]
    text = markdown(head, rows)
    shaky = any(UNSTABLE in str(cell) for row in rows for cell in row)
    return compose("# Is TensorRT worth it? Every network",
                   "Largest and smallest batch of each network; \"x Vanilla\" is the speed-up over PyTorch fp32 (above 1: "
                   "faster); the top-1 drop is in points below PyTorch fp32 on the same images.", text,
                   *([UNSTABLE_NOTE] if shaky else []))


def not_measured_markdown(records: Sequence[Dict[str, Any]]) -> Doc:
    """The study rows that were skipped (cannot run) or failed, newest per job, unless a later record of the
    same job measured it."""
    latest: Dict[Any, Dict[str, Any]] = {}
    for r in records:
        if r.get("kind") == "validate" and r.get("job_key"):
            latest[r["job_key"]] = r
    groups: Dict[Tuple[str, str, str], List[Tuple[int, str]]] = defaultdict(list)
    for r in latest.values():  # one row per runner and reason, with the jobs it stopped
        if r.get("error"):
            runner = f"{r.get('backend')} {r.get('precision')}" + (f" ({r['options']})" if r.get("options") else "")
            groups[(str(r.get("network")), runner, str(r["error"]))].append((int(r.get("batch_size") or 0),
                                                                             str(r.get("role") or "run")))
    if not groups:
        return compose()
    rows = [[net, runner, ", ".join(f"{role} bs{bs}" if bs else role for bs, role in sorted(set(jobs))), why]
            for (net, runner, why), jobs in sorted(groups.items())]
    return compose("## Not measured", markdown(["network", "runner", "jobs", "why"], rows))


ENERGY_NOTE = ("Energy from NVML's counter over each row's timed window, for the whole GPU (idle power and any other "
               "work on it included): images/s per watt is images per joule where images/s is over the same window "
               "(pipelined rows); a window under a second gives no figure.")


def energy_markdown(records: Sequence[Dict[str, Any]]) -> Doc:
    """Per GPU row: mean power, joules per image and images/s per watt over the timed window, or why there is no
    figure (a short window, no counter). Empty where no row ran on a GPU."""
    recs = [r for r in study_order(records) if r.get("energy_scope")]
    if not recs:
        return compose()
    several = len({r.get("network") for r in recs}) > 1
    rows = [[r.get("network")] * several + [row_label(r), r.get("batch_size"), r.get("mode"),
             _fmt(r.get("images_per_s"), 1), _fmt(r.get("power_mean_w"), 1), _e(r.get("joules_per_image"), ".4g"),
             _fmt(r.get("images_per_s_per_watt"), 2), _fmt(r.get("energy_window_s"), 2), r.get("energy_note") or ""]
            for r in recs]
    head = ["network"] * several + ["runner", "batch", "mode", "images/s", "mean power (W)", "J / image",
                                    "images/s per W", "window (s)", "no figure because"]
    return compose("## Energy per image", ENERGY_NOTE, markdown(head, rows))


MIXED_PRECISION_HEADER = ["k (layers kept)", "newly kept", "top-1 (%)", "drop (points)", "size (MiB)", "within budget"]


def mixed_precision_markdown(records: Sequence[Dict[str, Any]]) -> Doc:
    """--mixed_precision: per search, fp32's top-1 on the held-out images, the budget, what was chosen, and one row
    per step in the order measured (k layers kept out of quantization, the names that step added, its top-1, drop,
    file size, within budget or not); empty when no record holds a search."""
    searches: Dict[Any, Tuple[Dict[str, Any], List[Dict[str, Any]]]] = {}
    for r in records:
        prep = r.get("preparation")
        block = prep.get("mixed_precision") if isinstance(prep, dict) else None
        if r.get("kind") != "validate" or r.get("error") or not isinstance(block, dict):
            continue  # several jobs and backends run one search's file: it is shown once
        key = (r.get("network"), block.get("search_file"), block.get("final_onnx"))
        searches.setdefault(key, (block, []))[1].append(r)
    if not searches:
        return compose()
    parts: List[Any] = ["## Mixed precision within a top-1 budget (--mixed_precision)",
                        "Each step keeps the k layers that add the most error (ranked on calibration images) out of "
                        "quantization and measures top-1 on held-out images; k is bisected, which assumes that keeping "
                        "more layers never lowers top-1: every step is shown, so a step where it does is visible."]
    for (network, _, _), (b, recs) in sorted(searches.items(), key=lambda kv: tuple(str(k) for k in kv[0])):
        runners = ", ".join(sorted({row_label(r) for r in recs}))
        outcome = (f"{b['final_k']} of {b['ranked_layers']} ranked layers kept in high precision" if b["met"] else
                   f"NOT met: even with all {b['ranked_layers']} ranked layers kept out of quantization the drop is over "
                   "budget; that file is used")
        file = str(b.get("final_onnx") or "").replace("\\", "/").rsplit("/", 1)[-1]
        engines = any(isinstance(st.get("engine"), dict) and st["engine"].get("layer_precisions")
                      for st in b["steps"])  # a column only where TensorRT's inspector read some back
        parts += [f"### {network}: {runners}",
                  f"Budget {b['budget']:g} points below fp32's top-1 of {b['fp32_top1']:.2f}% on {b['heldout_images']} "
                  f"held-out images ({b.get('heldout_rule') or 'not named'}); calibrated on {b['calib_images']} "
                  f"images: {outcome}. File: {file}.",
                  markdown(MIXED_PRECISION_HEADER + (["engine layers (TensorRT)"] if engines else []),
                           [[str(st["k"]), _step_names(st.get("added") or []), f"{st['top1']:.2f}", f"{st['drop']:.2f}",
                             _fmt(st.get("size_mib"), 2), "yes" if st["within"] else "no"]
                            + ([_engine_cell(st.get("engine"))] if engines else []) for st in b["steps"]])]
    return compose(*parts)


def _engine_cell(engine: Any) -> str:
    """A step's engine layers by precision, most first ("int8 40, fp32 12"), "not read" where the engine was built
    but not read back, "not built", or "-" where no build was tried."""
    if not isinstance(engine, dict):
        return "-"
    counts = engine.get("layer_precisions")
    if counts:
        return ", ".join(f"{p} {n}" for p, n in sorted(counts.items(), key=lambda pn: (-pn[1], pn[0])))  # most first
    return "not read" if engine.get("built") else "not built"


def _step_names(names: Sequence[str], most: int = 3) -> str:
    """The first names a step added, and how many more: a step of 40 layers stays one line."""
    if not names:
        return "-"
    return ", ".join(names[:most]) + (f" (+{len(names) - most} more)" if len(names) > most else "")


# --- serving under MLPerf LoadGen (utils.measure.serving; role "scenario") ------------------------------------------

SERVED_HEADING = "## Served within the budget (MLPerf LoadGen)"
SERVED_NOTE = ("Offline: samples/s with every query issued at once. Server: the highest rate of Poisson arrivals "
               "(one sample per query) whose latency percentile stayed within the bound in a LoadGen run that was "
               "VALID (--find_peak bisects whole runs; a single --target_qps run shows its rate where it was VALID, a "
               "rate met rather than a peak), and the latency at that rate. Server / Offline: the share of the batch "
               "throughput served within the bound. x PyTorch fp32: that rate over PyTorch fp32's, at the same bound "
               "on the same images. LoadGen: INVALID with its reasons where no run was VALID.")
STREAM_NAMES = {n: s.title for n, s in SCENARIOS.items() if s.table == "stream"}  # a row per run
PAIRED = [n for n, s in SCENARIOS.items() if s.table == "served"]  # offline and server, paired per runner
Run = Tuple[Tuple[Any, ...], Optional[Dict[str, Any]], Optional[Dict[str, Any]]]  # row key, Offline, Server record


def finite_number(v: Any) -> Optional[float]:
    """v as a finite float, or None: a missing, NaN or infinite figure is a blank, never "nan"."""
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return None
    return float(v) if math.isfinite(v) else None


def _settings(r: Optional[Dict[str, Any]]) -> Dict[str, Any]:
    s = (r or {}).get("serve_settings")
    return s if isinstance(s, dict) else {}


def serve_question(r: Dict[str, Any]) -> Tuple[float, float]:
    """(percentile, latency bound in ms) a serving run was held to; LoadGen's defaults here (99, 15) where unsaid."""
    s = _settings(r)
    return (finite_number(s.get("percentile")) or 99.0, finite_number(s.get("latency_bound_ms")) or 15.0)


def _latency(r: Optional[Dict[str, Any]], name: str) -> Optional[float]:
    lat = (r or {}).get("latency_ms")
    return finite_number(lat.get(name)) if isinstance(lat, dict) else None


def _batcher(r: Dict[str, Any]) -> str:
    s = _settings(r)
    return f"max batch {s.get('max_batch', r.get('batch_size'))}, wait {s.get('max_queue_delay_us', '?')} us"


def served_records(records: Sequence[Dict[str, Any]]) -> List[Dict[str, Any]]:
    """The newest serving record of each setup, scenario and settings, failed ones left out; each a copy whose
    `images` is the count LoadGen's library held where its accuracy run gave none (the same images, one dataset)."""
    return [{**r, "images": r.get("images") if r.get("images") is not None else r.get("accuracy_samples")}
            for r in latest_per_config([r for r in records if r.get("kind") == "validate" and is_scenario(r)])]


def served_qps(r: Dict[str, Any]) -> Tuple[Optional[float], str]:
    """A Server record's rate within its bound, and its cell: --find_peak's peak_qps, or a --target_qps run's target
    where it was VALID; (None, what was missed) where no rate was met."""
    pct, _ = serve_question(r)
    tail = _fmt(_latency(r, f"p{pct:g}"), 3)
    if _settings(r).get("find_peak") or r.get("peak_search"):
        peak = finite_number(r.get("peak_qps"))
        if peak is not None:
            return peak, _fmt(peak, 1)
        return None, f"none met (p{pct:g} {tail} ms at {_fmt(finite_number(r.get('target_qps')), 1)} QPS)"
    target = finite_number(r.get("target_qps"))
    if r.get("loadgen_valid") is True and target is not None:
        return target, f"{_fmt(target, 1)} (target met)"
    return None, f"not met (p{pct:g} {tail} ms)"


def _pair_runs(recs: Sequence[Dict[str, Any]], extra: Sequence[Tuple[str, Callable[[Dict[str, Any]], str]]]
               ) -> List[Run]:
    """Per runner (and dataset, weights, batcher): its newest Offline record beside each of its Server records, one row
    each; a runner without a Server run is one row with its Offline run."""
    groups: Dict[Tuple[Any, ...], Dict[str, Any]] = defaultdict(lambda: {"offline": None, "server": []})
    for r in sorted(recs, key=lambda r: str(r.get("time", ""))):
        g = groups[(row_label(r), *[f(r) for _, f in extra], _batcher(r))]
        if r.get("scenario") == "offline":
            g["offline"] = r
        elif r.get("scenario") == "server":
            g["server"].append(r)
    runs = [(key, g["offline"], s) for key, g in groups.items() for s in g["server"] or [None]]
    return sorted([run for run in runs if run[1] or run[2]],
                  key=lambda run: (row_sort_key(run[2] or run[1]), tuple(map(str, run[0]))))


def _times_reference(run: Run, runs: Sequence[Run]) -> str:
    """This row's rate within the bound over PyTorch fp32's, on the same images (the same batcher first); a blank
    that says why where there is none."""
    server = run[2]
    mine = served_qps(server)[0] if server else None
    if server is None or mine is None:
        return "-"
    refs = [s for _, _, s in runs if s is not None and is_reference(s) and images_key(s) == images_key(server)]
    refs.sort(key=lambda s: _batcher(s) != _batcher(server))
    if not refs:
        return "- (no plain PyTorch fp32 Server run on these images: no options, no CUDA graph)"
    theirs = served_qps(refs[0])[0]
    return f"{mine / theirs:.2f}x" if theirs else "- (PyTorch fp32 met no rate)"


def _served_top1(offline: Optional[Dict[str, Any]], server: Optional[Dict[str, Any]]) -> str:
    """The Server run's top-1 (LoadGen's accuracy run), else the Offline run's; "not checked" and why where LoadGen's
    accuracy log could not give one."""
    first, other = (server, offline) if server is not None else (offline, None)
    if first is not None and first.get("top1") is not None:
        return accuracy(first, "top1")
    why = f"not checked: {first['accuracy_error']}" if first is not None and first.get("accuracy_error") else None
    if other is not None and other.get("top1") is not None:
        return f"{accuracy(other, 'top1')} (Offline's" + (f"; Server {why}" if why else "") + ")"
    return why or "-"


def _loadgen_verdict(runs: Sequence[Tuple[str, Optional[Dict[str, Any]]]]) -> str:
    """VALID, or INVALID with LoadGen's reasons for each scenario of the row that had no VALID run."""
    bad = []
    for name, r in runs:
        if r is None or r.get("loadgen_valid") is True or (name == "Server" and served_qps(r)[0] is not None):
            continue
        reasons = [str(x) for x in r.get("loadgen_invalid_reasons") or []] + (
            [str(r["peak_stopped"])] if r.get("peak_stopped") else [])
        if r.get("loadgen_valid") is None and not reasons:
            reasons = ["LoadGen's verdict was not recorded"]
        bad.append(f"{name}: {'; '.join(reasons) or 'no reason given'}")
    return "INVALID (" + ". ".join(bad) + ")" if bad else "VALID"


def _gate_mark(r: Optional[Dict[str, Any]], ref: Optional[Dict[str, Any]], max_drop: float) -> str:
    if r is None or not_numbers(r):
        return "NaN" if r is not None else "-"
    if r.get("top1") is None:
        return "no top-1"
    if ref is None or ref.get("top1") is None:
        return "no reference"
    return "OVER" if float(ref["top1"]) - float(r["top1"]) > max_drop + 1e-9 else "ok"


def _served_row(run: Run, runs: Sequence[Run], pct: float, max_drop: Optional[float]) -> List[Any]:
    key, offline, server = run
    offline_rate = finite_number((offline or {}).get("samples_per_s"))
    rate, rate_cell = served_qps(server) if server else (None, "-")
    share = f"{rate / offline_rate:.2f}" if rate is not None and offline_rate else "-"
    at = server if rate is not None else None
    row = [*key, _fmt(offline_rate, 1), rate_cell, share, _fmt(_latency(at, "p50"), 3),
           _fmt(_latency(at, f"p{pct:g}"), 3), _served_top1(offline, server), _times_reference(run, runs),
           _loadgen_verdict([("Offline", offline), ("Server", server)])]
    if max_drop is not None:
        mine = next((r for r in (server, offline) if r is not None and r.get("top1") is not None), server or offline)
        refs = [r for _, o, s in runs for r in (s, o) if r is not None and is_reference(r) and r.get("top1") is not None
                and images_key(r) == images_key(mine or {})]
        row.append(_gate_mark(mine, refs[0] if refs else None, max_drop))
    return row


def _served_table(runs: Sequence[Run], extra: Sequence[Tuple[str, Any]], question: Optional[Tuple[float, float]],
                  max_drop: Optional[float]) -> Doc:
    """The Offline / Server table of one network and one latency bound."""
    pct, bound = question or (99.0, 15.0)
    batchers = len({run[0][-1] for run in runs}) > 1  # the batcher's column only where rows differ in it
    rows = [_served_row(run, runs, pct, max_drop) for run in runs]
    rows = [row if batchers else row[:len(extra) + 1] + row[len(extra) + 2:] for row in rows]
    head = (["runner", *[h for h, _ in extra]] + ["batcher"] * batchers
            + ["Offline samples/s", f"Server peak QPS (p{pct:g} <= {bound:g} ms)" if question else "Server peak QPS",
               "Server / Offline", "p50 @ peak (ms)", f"p{pct:g} @ peak (ms)", "top-1 (%)", "x PyTorch fp32", "LoadGen"]
            + ([f"drop <= {max_drop:g}"] if max_drop is not None else []))
    return markdown(head, rows)


def _stream_table(recs: Sequence[Dict[str, Any]], extra: Sequence[Tuple[str, Callable[[Dict[str, Any]], str]]]
                  ) -> Doc:
    """SingleStream (one sample per query, one query after the other) and MultiStream rows: latency and samples/s."""
    mine = sorted((r for r in recs if r.get("scenario") in STREAM_NAMES),
                  key=lambda r: (row_sort_key(r), row_label(r), list(STREAM_NAMES).index(r["scenario"])))
    if not mine:
        return compose()
    rows = [[row_label(r), *[f(r) for _, f in extra], STREAM_NAMES[str(r["scenario"])] + (
                f" ({_settings(r).get('samples_per_query')} samples/query)" if SCENARIOS[str(r["scenario"])].per_query
                else ""),
             _fmt(_latency(r, "p50"), 3), _fmt(_latency(r, "p90"), 3), _fmt(_latency(r, "p99"), 3),
             _fmt(finite_number(r.get("samples_per_s")), 1), _served_top1(r, None), _loadgen_verdict([("LoadGen", r)])]
            for r in mine]
    return markdown(["runner", *[h for h, _ in extra], "scenario", "p50 (ms)", "p90 (ms)", "p99 (ms)", "samples/s",
                     "top-1 (%)", "LoadGen"], rows)


def _served_note(recs: Sequence[Dict[str, Any]], question: Optional[Tuple[float, float]]) -> str:
    """One line under a network's tables: the bound, LoadGen's version, how long each run lasted."""
    versions = sorted({str(r["loadgen_version"]) for r in recs if r.get("loadgen_version")})
    notes = sorted({str(r["duration_note"]) for r in recs if r.get("duration_note")})
    bound = (f"Server held to p{question[0]:g} latency <= {question[1]:g} ms" if question else
             "no Server run")
    return (f"{bound}; LoadGen {', '.join(versions) or 'version not recorded'}"
            + (f"; {'; '.join(notes)}" if notes else "") + ".")


def _served_network(network: str, recs: Sequence[Dict[str, Any]], max_drop: Optional[float]) -> List[Any]:
    """A network's served tables: one per latency bound its Server runs were held to, then its stream rows."""
    extra = identity_columns(recs)
    runs = _pair_runs(recs, extra)
    bounds: List[Optional[Tuple[float, float]]] = [*sorted({serve_question(s) for _, _, s in runs if s is not None})]
    questions = bounds or [None]
    parts: List[Any] = []
    for q in questions:
        mine = [run for run in runs if run[2] is None or serve_question(run[2]) == q]
        title = f"### {network}" + (f", Server at p{q[0]:g} <= {q[1]:g} ms" if q and len(questions) > 1 else "")
        parts += [title, _served_table(mine, extra, q, max_drop) if mine else None, _served_note(recs, q)]
    stream = _stream_table(recs, extra)
    if stream:
        parts += ["SingleStream and MultiStream (latency per query):", stream]
    return parts


def served_markdown(records: Sequence[Dict[str, Any]], max_top1_drop: Optional[float] = None) -> Doc:
    """Served within the budget, per network: each runner's Offline samples/s, its Server peak QPS within the latency
    bound, their ratio, the latency at that rate, top-1 under LoadGen, the peak over PyTorch fp32's and LoadGen's
    verdict; SingleStream / MultiStream rows below. With max_top1_drop, rows over it are marked. Empty without
    serving records."""
    recs = served_records(records)
    recs = [r for r in recs if r.get("scenario") in SCENARIOS]
    if not recs:
        return compose()
    parts: List[Any] = [SERVED_HEADING, SERVED_NOTE]
    for network in sorted({str(r.get("network")) for r in recs}):
        parts += _served_network(network, [r for r in recs if str(r.get("network")) == network], max_top1_drop)
    return compose(*parts)
