"""One top-1 for every measurement (utils/core/predictions.py): an image whose outputs are NaN/Inf or all equal has
no prediction (class -1) and counts as wrong, in timing, serving, --compare and the mixed-precision search alike."""
from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from utils.core.predictions import no_prediction, output_flags, top_classes
from utils.measure.compare import CompareStats
from utils.measure.sut import runner_infer
from utils.models import mixed_precision as mp

NAN, INF = float("nan"), float("inf")


def test_top_classes_gives_no_class_to_nan_inf_or_flat_rows():
    y = torch.tensor([[0.1, 3.0, 2.0], [NAN, 9.0, 1.0], [1.0, INF, 0.0], [5.0, 5.0, 5.0], [-1.0, -3.0, -2.0]])
    assert top_classes(y, 2).tolist() == [[1, 2], [-1, -1], [-1, -1], [-1, -1], [0, 2]]
    assert top_classes(y, 9).shape == (5, 3)  # k past the classes: every class, ranked
    assert no_prediction(y).tolist() == [False, True, True, True, False]
    assert output_flags(y).tolist() == [[False, False], [True, False], [True, False], [False, True], [False, False]]
    assert top_classes(torch.tensor([[7.0], [NAN]]), 1).tolist() == [[0], [-1]]  # one output ranks; NaN does not
    assert top_classes(torch.tensor([[0.0, 2.0]], dtype=torch.float16)).tolist() == [[1]]


def _model(path: Path, scale: float) -> Path:
    """An ONNX "classifier" whose logits are the first four input values times `scale` (NaN: every logit NaN; 0: all
    equal), so the right class is known."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    nodes = [helper.make_node("Flatten", ["input"], ["f"]),
             helper.make_node("Slice", ["f", "start", "end", "axis"], ["s"]),
             helper.make_node("Mul", ["s", "scale"], ["logits"])]
    inits = [numpy_helper.from_array(np.array([0], np.int64), "start"),
             numpy_helper.from_array(np.array([4], np.int64), "end"),
             numpy_helper.from_array(np.array([1], np.int64), "axis"),
             numpy_helper.from_array(np.array(scale, np.float32), "scale")]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["n", 1, 2, 2])],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["n", 4])], initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


class _Images:
    """Six images whose largest of the first four values is at class 0 (labels all 0)."""

    def batches(self, size, indices):
        x = torch.zeros(len(indices), 1, 2, 2)
        x[:, 0, 0, 0] = 1.0
        yield x, torch.zeros(len(indices), dtype=torch.long), None


@pytest.mark.parametrize("scale, top1", [(1.0, 100.0), (float("nan"), 0.0), (0.0, 0.0)])
def test_the_mixed_precision_search_counts_nan_and_flat_outputs_wrong(tmp_path, scale, top1):
    # argmax over a NaN or an all-zero row answers class 0, which the labels are: the search once counted them right
    heldout = mp.Heldout(_Images(), np.arange(6), lambda x: x, {})
    assert mp.onnx_top1(_model(tmp_path / "m.onnx", scale), heldout) == top1


def test_serving_answers_no_class_for_flat_outputs():
    runner = SimpleNamespace(normalizer=lambda x: x, infer=lambda x: x)
    samples = SimpleNamespace(gather=lambda idx: torch.tensor([[1.0, 4.0], [2.0, 2.0], [NAN, 1.0]])[torch.as_tensor(idx)])
    assert runner_infer(runner, samples, [3])(np.arange(3)).tolist() == [1, -1, -1]


def test_compare_never_counts_two_missing_predictions_as_agreement():
    stats = CompareStats(rtol=1e-3, atol=1e-5)
    flat = torch.zeros(2, 4)
    real = torch.tensor([[0.0, 3.0, 1.0, 2.0], [4.0, 0.0, 1.0, 2.0]])
    stats.update(torch.cat([flat, real]), torch.cat([flat, real]), torch.tensor([0, 0, 1, 0]), list("abcd"))
    s = stats.summary()
    assert s["top1_agreement_percent"] == 50.0  # the two real rows agree; the flat ones predict nothing
    assert s["ref_top1"] == s["other_top1"] == 50.0  # class -1 is never the label 0
