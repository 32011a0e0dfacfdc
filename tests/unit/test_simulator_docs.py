"""The lift figures quoted in docs/SIMULATOR.md and BENCHMARKS.md are the committed benchmark
results rendered, not hand-copied: a re-run of bench/lift_bench.py re-renders them, and a doc
edited by hand (or results committed without their docs) fails here."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _renderer() -> ModuleType:
    path = ROOT / "bench" / "render_lift_docs.py"
    spec = importlib.util.spec_from_file_location("render_lift_docs", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("render_lift_docs", module)
    spec.loader.exec_module(module)
    return module


def test_the_lift_blocks_match_the_committed_results() -> None:
    render = _renderer()
    lift = render.load_lift()
    assert {"default", "null"} <= set(lift), "run bench/lift_bench.py to record the lift section"
    assert render.stale(lift) == []


def test_the_blocks_quote_the_recorded_headline_figures() -> None:
    render = _renderer()
    lift = render.load_lift()
    simulator = (ROOT / "docs" / "SIMULATOR.md").read_text(encoding="utf-8")
    benchmarks = (ROOT / "BENCHMARKS.md").read_text(encoding="utf-8")
    default = lift["default"]
    mean = render._pct(default["mean_lift"])
    assert f"**{mean}**" in simulator
    assert f"| default | {render._size(default)} | {mean} |" in benchmarks


def test_a_hand_edited_block_is_caught(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    render = _renderer()
    lift = render.load_lift()
    for doc in render.DOCS:
        target = tmp_path / doc
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(render.rendered(doc, lift), encoding="utf-8")
    monkeypatch.setattr(render, "ROOT", tmp_path)
    assert render.stale(lift) == []
    doc = tmp_path / "BENCHMARKS.md"
    doc.write_text(doc.read_text(encoding="utf-8").replace("| default |", "| default (edited) |"))
    assert render.stale(lift) == ["BENCHMARKS.md"]
