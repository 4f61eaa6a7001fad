"""tools/mutation.py: the equivalents list it reads, its arithmetic, and that every module it names exists."""
from __future__ import annotations

import fnmatch
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))

import mutation  # noqa: E402


def test_every_listed_equivalent_names_a_mutated_function_with_a_reason():
    listed = mutation.equivalents()
    assert len(listed) >= 6 and all(len(why) >= 8 for why in listed.values())  # "the same." refers to the line above
    for key in listed:
        module = key.split(".x")[0].split(".xǁ")[0]
        owners = [name for name, (files, functions, _) in mutation.MODULES.items()
                  if module.replace(".", "/") + ".py" in files
                  and (functions is None or any(fnmatch.fnmatch(key, f) for f in functions))]
        assert owners, key


def test_modules_name_files_and_tests_that_exist():
    for name, (files, functions, tests) in mutation.MODULES.items():
        paths = [t for t in tests if t.startswith("tests/")]  # the rest are pytest options (-k ...)
        assert paths and all((ROOT / f).is_file() for f in files + paths), name
        assert functions is None or all(f.startswith(tuple(x[:-3].replace("/", ".") for x in files))
                                        for f in functions), name


def test_summary_counts_equivalents_out_of_the_rate(tmp_path):
    statuses = {"m.x_f__mutmut_1": "killed", "m.x_f__mutmut_2": "survived", "m.x_f__mutmut_3": "survived",
                "m.x_f__mutmut_4": "no tests", "m.x_f__mutmut_5": "killed", "m.x_f__mutmut_6": "timeout"}
    row = mutation.summarise("m", statuses, {"m.x_f__mutmut_3": "why"})
    assert row["mutants"] == 6 and row["killed"] == 3 and row["equivalent"] == 1  # a hang counts as caught
    assert row["survivors"] == ["m.x_f__mutmut_2", "m.x_f__mutmut_4"] and row["kill rate %"] == 60.0
    doc = tmp_path / "m.md"
    doc.write_text("- `m.x_f__mutmut_2`: a reason long enough\n- `other`: not a mutant key\n")
    assert mutation.equivalents(doc) == {"m.x_f__mutmut_2": "a reason long enough"}


def test_which_modules_and_functions_a_run_mutates(monkeypatch, tmp_path, capsys):
    """No module named: every module but the GPU one (its tests skip without CUDA); --only narrows the functions."""
    import types

    monkeypatch.setitem(sys.modules, "mutmut", types.ModuleType("mutmut"))
    calls = []

    def fake_run(name, workdir, children, only=None):
        calls.append((name, only))
        return {f"utils.x_f__mutmut_{i}": "killed" for i in range(3)}

    monkeypatch.setattr(mutation, "run_module", fake_run)
    assert mutation.main(["--workdir", str(tmp_path)]) == 0
    assert [n for n, _ in calls] == [m for m in mutation.MODULES if m != "timing on a GPU"] and len(calls) >= 9
    calls.clear()
    assert mutation.main(["timing on a GPU", "--workdir", str(tmp_path), "--only", "a*", "b*"]) == 0
    assert calls == [("timing on a GPU", ["a*", "b*"])]
    assert mutation.main(["no such module", "--workdir", str(tmp_path)]) == 2
    assert "no module 'no such module' here" in capsys.readouterr().err
