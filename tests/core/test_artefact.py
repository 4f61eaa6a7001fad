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


def test_the_sidecar_and_the_reasons_word_for_word(tmp_path, caplog, monkeypatch):
    import utils.core.artefact as art
    from utils.core.fileio import cache_key

    import types

    clock = iter([100.0, 101.2345])
    make = Maker(b"x" * 10)
    with monkeypatch.context() as m:
        m.setattr(art, "time", types.SimpleNamespace(perf_counter=lambda: next(clock)))
        path, facts = cached(tmp_path, "thing", ".bin", {"a": 1}, make)
    assert facts["prepare_s"] == 1.234 and facts["cached"] is False  # seconds, to the millisecond
    side = json.loads(path.with_suffix(".json").read_text())
    assert side["artefact"] == {"key": cache_key({"a": 1}), "settings": {"a": 1}, "bytes": 10,
                                "fingerprint": art.file_sha256(path)}
    assert side["made_by"] == "test" and art.sidecar_of(path) == path.with_suffix(".json")
    assert path.name == f"thing-{cache_key({'a': 1})}.bin"
    key = cache_key({"a": 1})
    assert art._problem(tmp_path / "none.bin", tmp_path / "none.json", key, art.sha256_fingerprint) == (None, "absent")
    assert art._problem(path, path.with_suffix(".json"), key, art.sha256_fingerprint) == (side, "")
    path.write_bytes(b"y" * 10)
    assert art._problem(path, path.with_suffix(".json"), key, art.sha256_fingerprint) == (
        None, "does not hold the content it was written with")
    path.write_bytes(b"y" * 4)
    assert art._problem(path, path.with_suffix(".json"), key, art.sha256_fingerprint) == (
        None, "holds 4 bytes, not the 10 it was written with (truncated or replaced)")
    assert art._problem(path, path.with_suffix(".json"), "other", art.sha256_fingerprint) == (
        None, "has a sidecar from another ArtTRT version or other settings")
    path.with_suffix(".json").write_text("[1, 2]")  # JSON, but not ours
    assert art._problem(path, path.with_suffix(".json"), key, art.sha256_fingerprint) == (
        None, "has a sidecar from another ArtTRT version or other settings")
    with caplog.at_level(logging.WARNING):
        cached(tmp_path, "thing", ".bin", {"a": 1}, make)
    assert [r.getMessage() for r in caplog.records] == [
        f"{path.name} has a sidecar from another ArtTRT version or other settings: rebuilding it"]
    caplog.clear()
    with caplog.at_level(logging.DEBUG, logger="utils.core.artefact"):
        cached(tmp_path, "thing", ".bin", {"a": 1}, make)
    assert [r.getMessage() for r in caplog.records] == [f"reusing {path}"]
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        cached(tmp_path, "new", ".bin", {"a": 1}, make)  # made for the first time: nothing to warn about
    assert caplog.text == ""


def test_a_sound_artefact_can_still_be_outdated(tmp_path, caplog):
    make = Maker()
    reasons = {"now": None}
    path, _ = cached(tmp_path, "thing", ".bin", {}, make, still_valid=lambda meta: reasons["now"])
    assert cached(tmp_path, "thing", ".bin", {}, make, still_valid=lambda meta: reasons["now"])[1]["cached"]
    reasons["now"] = "skipped a file that can be read now"
    with caplog.at_level(logging.WARNING):
        _, facts = cached(tmp_path, "thing", ".bin", {}, make, still_valid=lambda meta: reasons["now"])
    assert not facts["cached"] and make.calls == 2
    assert f"{path.name} skipped a file that can be read now: rebuilding it" in caplog.text
