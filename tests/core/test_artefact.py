"""The one cached-artefact helper: made once, reused while it checks out, rebuilt (with a warning) when the
file or its sidecar is damaged, never left half-written."""
from __future__ import annotations

import json
import logging

import pytest

from utils.core.artefact import cached


class Maker:
    """Writes `payload` and counts how often it was asked to."""

    def __init__(self, payload: bytes = b"artefact bytes " * 100):
        self.payload, self.calls = payload, 0

    def __call__(self, tmp):
        self.calls += 1
        tmp.write_bytes(self.payload)
        return {"made_by": "test", "size": len(self.payload)}


def test_made_once_then_reused(tmp_path):
    make = Maker()
    path, facts = cached(tmp_path, "thing", ".bin", {"a": 1}, make)
    assert path.read_bytes() == make.payload and not facts["cached"] and facts["made_by"] == "test"
    again, facts2 = cached(tmp_path, "thing", ".bin", {"a": 1}, make)
    assert again == path and facts2["cached"] and facts2["prepare_s"] == 0.0 and make.calls == 1
    other, _ = cached(tmp_path, "thing", ".bin", {"a": 2}, make)
    assert other != path and make.calls == 2  # other settings, other file; the first stays
    assert path.is_file() and path.name.startswith("thing-") and path.with_suffix(".json").is_file()
    forced, facts3 = cached(tmp_path, "thing", ".bin", {"a": 1}, make, force=True)
    assert forced == path and not facts3["cached"] and make.calls == 3


@pytest.mark.parametrize("damage, why", [
    (lambda p, s: p.write_bytes(p.read_bytes()[:-1] + b"X"), "does not hold the content it was written with"),
    (lambda p, s: p.write_bytes(p.read_bytes()[:10]), "truncated or replaced"),
    (lambda p, s: s.write_text("{not json"), "unreadable sidecar"),
    (lambda p, s: s.write_text(json.dumps({"artefact": {"key": "other"}})), "other settings"),
    (lambda p, s: p.unlink(), None),
])
def test_a_damaged_artefact_is_rebuilt_with_a_warning(tmp_path, caplog, damage, why):
    make = Maker()
    path, _ = cached(tmp_path, "thing", ".bin", {"a": 1}, make)
    damage(path, path.with_suffix(".json"))
    with caplog.at_level(logging.WARNING):
        again, facts = cached(tmp_path, "thing", ".bin", {"a": 1}, make)
    assert again == path and path.read_bytes() == make.payload and not facts["cached"] and make.calls == 2
    if why:
        assert why in caplog.text and "rebuilding it" in caplog.text


def test_a_failed_make_leaves_nothing(tmp_path):
    def broken(tmp):
        tmp.write_bytes(b"half")
        raise RuntimeError("interrupted")

    with pytest.raises(RuntimeError):
        cached(tmp_path, "thing", ".bin", {"a": 1}, broken)
    assert list(tmp_path.iterdir()) == []


def test_a_cheaper_fingerprint_is_used_both_ways(tmp_path):
    seen = []

    def first_bytes(path, facts):
        seen.append(facts["made_by"])
        return path.read_bytes()[:4].hex()

    make = Maker(b"abcdefgh")
    path, _ = cached(tmp_path, "thing", ".bin", {}, make, fingerprint=first_bytes)
    path.write_bytes(b"abcdXXXX")  # outside the fingerprint: not seen, by design of that fingerprint
    assert cached(tmp_path, "thing", ".bin", {}, make, fingerprint=first_bytes)[1]["cached"]
    path.write_bytes(b"XXcdefgh")
    assert not cached(tmp_path, "thing", ".bin", {}, make, fingerprint=first_bytes)[1]["cached"]
    assert seen == ["test"] * 4 and make.calls == 2
