"""The layout holds: layers import downward only, no import circle, no backend name compared above the
backends, TensorRT imported in one module, every layer says what it may import, and the example backend of
docs/architecture.md is the one the tests run."""
from __future__ import annotations

import ast
import re
from pathlib import Path
from typing import Dict, Iterator, List, Set, Tuple

import pytest

ROOT = Path(__file__).resolve().parent.parent
UTILS = ROOT / "utils"
SCRIPTS = ["main.py", "build_trt.py", "onnx_transform.py", "format_dataset.py"]
LAYERS = ["core", "data", "models", "backends", "measure", "report", "study"]
# What each layer may import besides itself and the layers that its __init__ docstring names.
MAY_IMPORT = {
    "core": set(),
    "data": {"core"},
    "models": {"core", "data"},
    "backends": {"core", "data", "models"},
    "measure": {"core", "data", "backends.base"},
    "report": {"core", "measure", "backends.registry"},
    "study": {"core", "data", "models", "backends", "measure", "report"},
}
BACKEND_NAMES = {"torch", "compile", "onnxrt", "tensorrt", "torchao"}


def module_name(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def modules() -> Dict[str, Path]:
    return {module_name(p): p for p in sorted(UTILS.rglob("*.py"))}


def _type_checking_lines(tree: ast.AST) -> Set[int]:
    """Line numbers inside `if TYPE_CHECKING:` blocks (imports there never run)."""
    lines: Set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for child in node.body:
                lines.update(range(child.lineno, (child.end_lineno or child.lineno) + 1))
    return lines


def imports(path: Path, known: Set[str], runtime_only: bool = False) -> Iterator[Tuple[str, int]]:
    """(imported utils module, line) for every import in the file, function-level ones included.

    `from pkg import name` is an import of pkg.name where that is a module, else of pkg."""
    tree = ast.parse(path.read_text())
    skip = _type_checking_lines(tree) if runtime_only else set()
    for node in ast.walk(tree):
        if getattr(node, "lineno", None) in skip:
            continue
        if isinstance(node, ast.Import):
            for a in node.names:
                if a.name.startswith("utils"):
                    yield a.name, node.lineno
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("utils"):
            for a in node.names:
                sub = f"{node.module}.{a.name}"
                yield (sub if sub in known else node.module), node.lineno


def layer_of(module: str) -> str:
    return module.split(".")[1] if module.count(".") >= 1 else ""


def test_every_module_lives_in_a_layer_and_each_layer_says_what_it_may_import():
    mods = modules()
    stray = [m for m in mods if m != "utils" and layer_of(m) not in LAYERS]
    assert not stray, f"modules outside the layers: {stray}"
    for layer in LAYERS:
        doc = ast.get_docstring(ast.parse((UTILS / layer / "__init__.py").read_text())) or ""
        assert "May import:" in doc, f"utils/{layer}/__init__.py must say what the layer may import"
        said = doc.split("May import:", 1)[1]
        for allowed in MAY_IMPORT[layer]:  # the docstring and the rule this test enforces say the same
            assert re.search(rf"\b{re.escape(allowed)}\b", said), \
                f"utils/{layer}/__init__.py does not say it may import utils.{allowed}"


def test_layers_import_downward_only():
    mods = modules()
    known = set(mods)
    wrong: List[str] = []
    for name, path in mods.items():
        own = layer_of(name)
        if not own:
            continue
        for target, line in imports(path, known):
            other = layer_of(target)
            sub = ".".join(target.split(".")[1:3])
            if other != own and other not in MAY_IMPORT[own] and sub not in MAY_IMPORT[own]:
                wrong.append(f"{path.relative_to(ROOT)}:{line} imports {target}")
    assert not wrong, "imports that go against the layers:\n" + "\n".join(wrong)


def test_no_import_circle():
    mods = modules()
    known = set(mods)
    graph = {name: {t for t, _ in imports(path, known, runtime_only=True) if t in known and t != name}
             for name, path in mods.items()}
    state: Dict[str, int] = {}
    stack: List[str] = []

    def visit(n: str) -> None:
        state[n] = 1
        stack.append(n)
        for m in sorted(graph[n]):
            if state.get(m) == 1:
                pytest.fail("import circle: " + " -> ".join(stack[stack.index(m):] + [m]))
            if m not in state:
                visit(m)
        stack.pop()
        state[n] = 2

    for n in sorted(graph):
        if n not in state:
            visit(n)


def _is_env(node: ast.AST) -> bool:
    """A record's environment: its keys are library versions ("torch", "tensorrt"), not backends."""
    return ast.unparse(node).split(".")[-1].split("[")[0].endswith("env") or "[\"env\"]" in ast.unparse(node)


def _compared_names(tree: ast.AST) -> Iterator[Tuple[int, str]]:
    """Backend names used to decide something: compared (==, in), matched (match/case), or used as a key
    (x["onnxrt"], x.get("tensorrt"))."""
    def names(node: ast.AST) -> Iterator[str]:
        values = node.elts if isinstance(node, (ast.Tuple, ast.List, ast.Set)) else [node]
        for v in values:
            if isinstance(v, ast.Constant) and v.value in BACKEND_NAMES:
                yield v.value

    for node in ast.walk(tree):
        sides: List[ast.AST] = []
        if isinstance(node, ast.Compare):
            sides = [node.left, *node.comparators]
        elif isinstance(node, ast.Subscript) and not _is_env(node.value):
            sides = [node.slice]
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "get" \
                and not _is_env(node.func.value):
            sides = node.args[:1]
        elif isinstance(node, ast.MatchValue):
            sides = [node.value]
        for side in sides:
            for name in names(side):
                yield getattr(node, "lineno", 0), name


def test_no_backend_name_is_compared_above_the_backends():
    files = [p for p in UTILS.rglob("*.py") if "backends" not in p.relative_to(UTILS).parts]
    files += [ROOT / s for s in SCRIPTS]
    found = [f"{p.relative_to(ROOT)}:{line} compares {name!r}" for p in files
             for line, name in _compared_names(ast.parse(p.read_text()))]
    assert not found, "backend names compared outside utils/backends/:\n" + "\n".join(found)


def test_the_name_check_sees_a_comparison():
    assert list(_compared_names(ast.parse("if spec.backend == 'tensorrt': pass"))) == [(1, "tensorrt")]
    assert list(_compared_names(ast.parse("x = b in ('torch', 'compile')"))) == [(1, "torch"), (1, "compile")]
    assert list(_compared_names(ast.parse("y = table.get('onnxrt')\nz = table['torch']"))) == \
        [(1, "onnxrt"), (2, "torch")]
    assert list(_compared_names(ast.parse("match b:\n    case 'tensorrt':\n        pass"))) == [(2, "tensorrt")]


def test_the_lazy_libraries_are_declared_once_and_tensorrt_is_not_among_them():
    from utils.core import deps

    declared = {name: m._lazy_name for name, m in vars(deps).items() if isinstance(m, deps.LazyModule)}
    assert declared == {"torch": "torch", "torchvision": "torchvision", "np": "numpy", "onnx": "onnx",
                        "onnxruntime": "onnxruntime", "mlperf_loadgen": "mlperf_loadgen"}
    assert not any(v.startswith("tensorrt") for v in declared.values())


def test_tensorrt_is_imported_in_one_module():
    """No runtime `import tensorrt` anywhere; the one dynamic import of TensorRT's modules is in api.py."""
    static, dynamic = [], []
    for p in list(UTILS.rglob("*.py")) + [ROOT / s for s in SCRIPTS]:
        tree = ast.parse(p.read_text())
        skip = _type_checking_lines(tree)
        for node in ast.walk(tree):
            if getattr(node, "lineno", None) in skip:
                continue
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            if any(n.split(".")[0] in ("tensorrt", "tensorrt_bindings", "tensorrt_rtx", "tensorrt_rtx_bindings")
                   for n in names):
                static.append(f"{p.relative_to(ROOT)}:{node.lineno}")
            if isinstance(node, ast.Call) and ast.unparse(node.func).split(".")[-1] in ("import_module", "__import__"):
                arg = node.args[0] if node.args else None
                if not isinstance(arg, ast.Constant) or str(arg.value).startswith("tensorrt"):
                    dynamic.append(f"{p.relative_to(ROOT)}: {ast.unparse(node)}")
    assert not static, f"TensorRT imported outside utils/backends/tensorrt/api.py: {static}"
    # the dynamic imports: api.py's loop over TensorRT's module names, the registry's backend modules, the lazy
    # libraries of utils/core/deps.py (each declared there by name, none of them TensorRT: checked below), the
    # decoding lanes' preloads (ArtTRT's own modules) and the layer classes a checkpoint names (torch.nn and
    # ultralytics.nn only: utils/models/safe_load.py)
    assert sorted(dynamic) == ["utils/backends/registry.py: importlib.import_module(self.module)",
                               "utils/backends/tensorrt/api.py: importlib.import_module(name)",
                               "utils/core/deps.py: importlib.import_module(self._lazy_name)",
                               "utils/data/lanes.py: importlib.import_module(name)",
                               "utils/models/safe_load.py: importlib.import_module(module)"], dynamic


def test_the_architecture_page_shows_the_example_backend_the_tests_run():
    page = (ROOT / "docs" / "architecture.md").read_text()
    example = (ROOT / "tests" / "backends" / "example_backend.py").read_text()
    assert f"```python\n{example}```" in page
    assert len(example.splitlines()) <= 45
    for layer in LAYERS:
        assert f"utils/{layer}/" in page


# Issue 26: thin entry scripts, no way back into main.py, short steps where the figures are made, unique names.
ENTRY_MAX_LINES = 200
STEP_MAX_LINES = 60


def test_entry_scripts_only_parse_and_are_short():
    for script in SCRIPTS:
        lines = len((ROOT / script).read_text().splitlines())
        assert lines < ENTRY_MAX_LINES, f"{script} has {lines} lines: its logic belongs in utils/"
    tree = ast.parse((ROOT / "main.py").read_text())
    writes = [f"main.py:{n.lineno}" for n in ast.walk(tree) if isinstance(n, (ast.Assign, ast.AugAssign))
              for t in (n.targets if isinstance(n, ast.Assign) else [n.target])
              if isinstance(t, ast.Attribute) and isinstance(t.value, ast.Name) and t.value.id == "args"]
    assert not writes, f"main.py writes into the argument namespace: {writes}"
    main_fn = next(n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "main")
    calls = [n for n in ast.walk(main_fn) if isinstance(n, ast.Call) and ast.unparse(n.func) == "build_parser"]
    assert len(calls) == 1, "main() builds its parser once"


def test_nothing_under_utils_imports_the_entry_scripts():
    found = []
    for p in UTILS.rglob("*.py"):
        for node in ast.walk(ast.parse(p.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            found += [f"{p.relative_to(ROOT)}:{node.lineno} imports {n}" for n in names
                      if n.split(".")[0] in {Path(s).stem for s in SCRIPTS}]
    assert not found, found


def test_the_code_that_makes_figures_is_in_short_steps_without_shared_closures():
    long, nested = [], []
    for p in sorted((UTILS / "measure").glob("*.py")):
        for node in ast.walk(ast.parse(p.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                length = (node.end_lineno or node.lineno) - node.lineno + 1
                if length > STEP_MAX_LINES:
                    long.append(f"{p.name}:{node.name} ({length} lines)")
                inner = [n for n in ast.walk(node) if isinstance(n, ast.Nonlocal)]
                if inner:
                    nested.append(f"{p.name}:{node.name}")
    assert not long, f"functions longer than {STEP_MAX_LINES} lines in utils/measure: {long}"
    assert not nested, f"closures sharing state (nonlocal) in utils/measure: {nested}"


def test_module_and_class_names_are_unique_across_the_tree():
    from collections import Counter

    stems = Counter(p.stem for p in UTILS.rglob("*.py") if p.stem != "__init__")
    assert [s for s, n in stems.items() if n > 1] == [], "two modules of one name"
    top: Counter = Counter()
    for p in UTILS.rglob("*.py"):
        for node in ast.parse(p.read_text()).body:
            if isinstance(node, (ast.ClassDef, ast.FunctionDef)) and not node.name.startswith("_"):
                top[node.name] += 1
    allowed = {"add_args", "make", "check", "label", "variants", "Options", "main", "build_parser"}  # the backends'
    # and scripts' interface: one per module by design (utils/backends/registry.py's module protocol)
    assert sorted(n for n, c in top.items() if c > 1 and n not in allowed) == []


def test_the_batch_size_lives_in_the_job_and_its_measurement_only():
    """A RunSpec says what is built and run, not the batch: the job's batch reaches the runner as an argument
    (make_runner, OpenRunner) and the measurement as MeasureOptions.batch_size, so the two cannot disagree."""
    import dataclasses
    import inspect

    from utils.backends.base import RunSpec
    from utils.backends.registry import BACKENDS
    from utils.measure.measurement import MeasureOptions
    from utils.study.plan import Job

    assert "batch_size" not in {f.name for f in dataclasses.fields(RunSpec)}
    assert "batch_size" in {f.name for f in dataclasses.fields(Job)}
    assert "batch_size" in {f.name for f in dataclasses.fields(MeasureOptions)}
    for backend in BACKENDS.values():  # every backend is told the batch its runner is made for
        assert list(inspect.signature(backend.impl().make).parameters) == ["spec", "net", "data", "batch_size"]


def test_the_checkout_guard_names_only_what_the_tests_could_have_written():
    from tests.conftest import _the_tests_wrote

    before = {"utils/core/fileio.py": (10, 1), "outputs/README.md": (5, 1), "README.md": (3, 1)}
    after = {"utils/core/fileio.py": (11, 2),             # someone's edit of a source file while the tests ran
             "outputs/README.md": (5, 1), "README.md": (3, 1),
             "outputs/records/x.json": (7, 3),            # a record in ArtTRT's own output folder
             "tests/models/m.onnx": (9, 3),               # an export beside the tests
             ".rtx/dl/libs.whl": (9, 3),                  # a download in an ignored folder
             "notes.txt": (1, 3)}                         # a file someone made
    assert _the_tests_wrote(before, after) == ["outputs/records/x.json", "tests/models/m.onnx"]


# Issue 39: short modules; tables, scenarios and job kinds each one row of their table; only report/ renders.
MODULE_MAX_LINES = 400


def test_no_module_in_utils_is_over_400_lines():
    long = {str(p.relative_to(ROOT)): n for p in UTILS.rglob("*.py")
            if (n := len(p.read_text().splitlines())) > MODULE_MAX_LINES}
    assert long == {}, f"modules over {MODULE_MAX_LINES} lines: split them along their jobs"


def test_every_table_module_is_a_row_of_sections_and_writes_the_files_its_row_names(tmp_path):
    """A table is one module under utils/report/sections/ and one row of layout.SECTIONS: every table module (but
    the shared cells and the look-inside files a study writes) is drawn by a row, and each row writes only the files
    it names (the report's own names are reserved from network names)."""
    import fnmatch

    from utils.report import layout

    drawn = {m for s in layout.SECTIONS for m in {
        getattr(f, "__module__", "") for f in [s.render, *vars(layout).values()] if callable(f)}}
    table_modules = {f"utils.report.sections.{p.stem}" for p in (UTILS / "report" / "sections").glob("*_tables.py")}
    imported = {t for t, _ in imports(UTILS / "report" / "layout.py", set(modules()))}
    assert table_modules - {"utils.report.sections.look_inside_tables"} <= imported, \
        "a table module no SECTIONS row draws"
    assert drawn  # the rows are functions
    names = [s.name for s in layout.SECTIONS]
    assert len(set(names)) == len(names)
    records = [_record(b, p, bs) for b, p in (("torch", "fp32"), ("onnxrt", "fp32")) for bs in (1, 4)]
    view = layout.View.of(records, max_drop=1.0, folder=tmp_path)
    for section, piece in layout.pieces(view, "report"):
        patterns = [f.replace("{network}", "*").replace("{batch}", "*").replace("{telemetry}", "*") for f in section.files]
        assert piece.file is None or any(fnmatch.fnmatch(piece.file, p) for p in patterns), (section.name, piece.file)
    reserved = {f[:-3] for s in layout.SECTIONS for f in s.files if f.endswith(".md") and "{" not in f}
    assert reserved == set(layout.RESERVED)
    assert layout.file_name("worth-it") == "network-worth-it"


def _record(backend: str, precision: str, bs: int) -> Dict[str, object]:
    return {"record_version": 2, "kind": "validate", "network": "net", "backend": backend, "precision": precision,
            "options": "",
            "batch_size": bs, "mode": "pipelined", "images_per_s": 100.0 * bs, "top1": 70.0, "latency_model_p50": 1.0,
            "latency_all_mean": 1.0, "latency_all_max": 1.0, "latency_model_mean": 1.0, "latency_model_max": 1.0,
            "dataset": "d", "images": 10, "weights": "w", "env": {}}


def test_only_the_report_layer_renders_tables():
    """The lower layers return data: no module under core, data, models, backends or measure makes a table or
    writes Markdown (report/doc.table is the one table helper; tabulate is called by it alone)."""
    found = []
    for p in UTILS.rglob("*.py"):
        if layer_of(module_name(p)) in ("report", "study"):
            continue
        text = p.read_text()
        found += [f"{p.relative_to(ROOT)}: {w}" for w in ("tabulate", "utils.report", "_markdown(", "| ---")
                  if w in text]
    assert not found, found
    users = [p.relative_to(ROOT) for p in UTILS.rglob("*.py") if "from tabulate" in p.read_text()]
    assert users == [Path("utils/report/doc.py")], users


def test_scenarios_and_job_kinds_are_each_one_row_of_their_table():
    """A scenario is one row of utils/measure/scenarios.SCENARIOS: argparse's --scenario choices, the tables and the
    plots read it (no scenario name written in main.py or the report layer; LoadGen's harness drives each by name);
    a job kind is one row of utils/study/plan.JOB_KINDS, and the study decides by its flags, never by its name."""
    import argparse

    import main
    from utils.measure.scenarios import SCENARIOS
    from utils.study.plan import JOB_KINDS

    choices = next(a.choices for a in main.build_parser()._actions
                   if isinstance(a, argparse.Action) and "--scenario" in a.option_strings)
    assert list(choices) == list(SCENARIOS)
    files = [ROOT / "main.py", UTILS / "study" / "request.py", *(UTILS / "report").rglob("*.py")]
    written = [f"{p.relative_to(ROOT)}:{node.lineno} {node.value!r}" for p in files if p.name != "schema.py"
               for node in ast.walk(ast.parse(p.read_text()))
               if isinstance(node, ast.Constant) and node.value in SCENARIOS]
    assert written == [], written
    study = [f"{p.name}:{node.lineno}" for p in (UTILS / "study").glob("*.py") if p.name != "plan.py"
             for node in ast.walk(ast.parse(p.read_text())) if isinstance(node, ast.Compare)
             for c in [node.left, *node.comparators] if isinstance(c, ast.Constant) and c.value in JOB_KINDS]
    assert study == [], f"job kinds compared by name outside plan.JOB_KINDS: {study}"


def test_imports_sit_at_the_top_but_the_declared_ones():
    """A file's top shows its dependencies: no import inside a function but of the packages utils/core/deps.py
    declares as imported where used (optional ones turned into a sentence, submodules, one-path packages), and never
    one of ArtTRT's own modules."""
    from utils.core.deps import IMPORTED_WHERE_USED

    inside = []
    for p in sorted(UTILS.rglob("*.py")):
        tree = ast.parse(p.read_text())
        for fn in ast.walk(tree):
            if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
                for node in ast.walk(fn):
                    names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                        [node.module or ""] if isinstance(node, ast.ImportFrom) else []
                    inside += [f"{p.relative_to(ROOT)}:{node.lineno} {n}" for n in names
                               if n.split(".")[0] not in IMPORTED_WHERE_USED]
    assert inside == [], "imports inside functions, not declared in utils/core/deps.IMPORTED_WHERE_USED"


# Above the schema layer a record is a typed schema.Record, read by attribute. A string lookup of a record field
# name (x.get("top1"), x["images_per_s"]) is allowed only where what is read is not a record, each said here.
RECORD_LAYER = {"schema.py", "schema_types.py", "records.py", "records_csv.py"}  # where a record is JSON
NOT_A_RECORD = {
    ("utils/report/sections/compare_tables.py", "compare_doc"): "CompareStats.summary(), the measure layer's dict",
    ("utils/report/sections/compare_tables.py", "compare_columns_markdown"): "CompareStats.summary() dicts",
    ("utils/report/sections/look_inside_tables.py", "drift_doc"): "utils.models.drift's rows",
    ("utils/report/sections/look_inside_tables.py", "onnx_layers_doc"): "utils.models.onnx_layers' rows",
    ("utils/report/sections/look_inside_tables.py", "engine_layers_doc"): "TensorRT's engine inspector's rows",
    ("utils/study/finish.py", "finish_study"): "the outcome counts by status",
    ("utils/study/identity.py", "keys_of"): "the job identity a record keeps (plan.job_identity's dict)",
    ("utils/study/run.py", "written_since"): "the claims other processes held",
    ("utils/study/workers.py", "claims_elsewhere"): "the claims other processes held",
    ("utils/study/study.py", "_reference"): "the network's and dataset's facts",
    ("utils/study/validate.py", "cold_start"): "the runner's build facts",
    ("utils/study/validate.py", "measure_with"): "the fields of a record being made, before it is written",
    ("utils/study/validate.py", "serve_with"): "the fields of a record being made, before it is written",
}


def _record_lookups(tree: ast.AST, fields: set) -> Iterator[Tuple[int, str, str]]:
    """(line, enclosing function, field) of each x.get("field") and x["field"] read of a record field's name."""
    def visit(node: ast.AST, func: str) -> Iterator[Tuple[int, str, str]]:
        for child in ast.iter_child_nodes(node):
            name = child.name if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)) and func == "-" else func
            key = None
            if isinstance(child, ast.Call) and isinstance(child.func, ast.Attribute) and child.func.attr == "get" \
                    and child.args and isinstance(child.args[0], ast.Constant):
                key = child.args[0].value
            elif isinstance(child, ast.Subscript) and isinstance(child.ctx, ast.Load) \
                    and isinstance(child.slice, ast.Constant):
                key = child.slice.value
            if key in fields:
                yield child.lineno, name, key
            yield from visit(child, name)

    yield from visit(tree, "-")


def test_records_are_read_by_attribute_above_the_schema_layer():
    from utils.report.schema import Record

    fields = set(Record.model_fields) | {f.alias for f in Record.model_fields.values() if f.alias}
    found, used = [], set()
    for layer in ("report", "study"):
        for p in sorted((UTILS / layer).rglob("*.py")):
            if p.name in RECORD_LAYER:
                continue
            where = str(p.relative_to(ROOT))
            for line, func, key in _record_lookups(ast.parse(p.read_text()), fields):
                if (where, func) in NOT_A_RECORD:
                    used.add((where, func))
                else:
                    found.append(f"{where}:{line} ({func}) looks up {key!r}")
    assert not found, "record fields looked up by name (read them as Record attributes):\n" + "\n".join(found)
    assert used == set(NOT_A_RECORD), f"allowed but no longer needed: {set(NOT_A_RECORD) - used}"


def test_the_record_lookup_check_sees_a_get_and_a_subscript():
    tree = ast.parse("def f(r):\n    return r.get('top1'), r['images'], r.top5, d.get('other')")
    assert list(_record_lookups(tree, {"top1", "images", "top5"})) == [(2, "f", "top1"), (2, "f", "images")]
