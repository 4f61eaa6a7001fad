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
