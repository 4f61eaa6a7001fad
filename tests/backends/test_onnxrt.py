"""The ONNX Runtime backend: the provider that really runs is recorded and a silent CPU fallback refused;
what its CPU provider cannot run is refused before any calibration."""
from __future__ import annotations

import pytest
import torch

import main
from utils.backends.base import RunSpec
from utils.backends.onnxrt import Options, check_providers
from utils.backends.registry import make_runner
from utils.core.errors import ArtTRTError, cli_boundary
from utils.data.cache import SyntheticDataset
from utils.data.options import DataOptions
from utils.measure.measurement import MeasureOptions
from utils.models.chain import ModelOptions, onnx_for
from utils.models.networks import load_network
from utils.models.precision import CalibOptions, convert_precision
from utils.study.validate import validate_one


@pytest.mark.slow
def test_provider_check_refuses_a_silent_fallback(tmp_path):
    """A real ONNX Runtime session asked for CUDA on a machine without it runs on the CPU: refused."""
    import onnxruntime as ort

    path, _ = onnx_for(load_network("resnet18"), (-1, 3, 64, 64))
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU: CUDA would load")
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sess = ort.InferenceSession(str(path), providers=["CUDAExecutionProvider", "CPUExecutionProvider"])
    used = sess.get_providers()
    assert used[0] == "CPUExecutionProvider"  # ONNX Runtime fell back without an error
    with pytest.raises(ArtTRTError, match="instead of CUDAExecutionProvider.*silent fallback"):
        check_providers("cuda", used, ort.get_available_providers())
    with pytest.raises(ArtTRTError, match="not in this ONNX Runtime build"):
        check_providers("tensorrt", used, ["CPUExecutionProvider"])
    check_providers("cpu", ["CPUExecutionProvider"], ["CPUExecutionProvider"])


@pytest.mark.slow
def test_onnxrt_records_the_provider_used_and_preparation(tmp_path):
    net = load_network("resnet18", seed=0)
    ds = SyntheticDataset(4, 80, seed=0)
    spec = RunSpec("onnxrt", "fp32", model=ModelOptions(input_shape=(-1, 3, 80, 80)))  # no other test's shape
    rec, _ = validate_one(spec, net, ds, MeasureOptions(batch_size=2, progress=False))
    rec = rec.as_dict()  # the record as written
    assert rec["providers_used"] == ["CPUExecutionProvider"] and rec["provider"] == "cpu"
    assert rec["prepare_s"] > 0 and rec["preparation"]["export_s"] == rec["prepare_s"]
    again, _ = validate_one(spec, net, ds, MeasureOptions(batch_size=2, progress=False))
    again = again.as_dict()  # the record as written
    assert again["prepare_s"] == 0.0  # a warm cache prepares nothing
    asked = RunSpec("onnxrt", "fp32", model=ModelOptions(input_shape=(-1, 3, 80, 80)), cuda_graph=True)
    graphless, _ = validate_one(asked, net, ds, MeasureOptions(batch_size=2, progress=False))
    graphless = graphless.as_dict()  # the record as written
    assert graphless["cuda_graph"] is None  # the record says what ran: ONNX Runtime replays no CUDA graph


@pytest.mark.slow
def test_fp8_on_ort_cpu_and_bad_calibration_settings_are_refused(lite0, demo_data, tmp_path, capsys):
    base = ["-v", "--network", "efficientnet_lite0", "--pretrained", "--dataset", str(demo_data),
            "--backend", "onnxrt", "--output", str(tmp_path), "--quiet"]
    with pytest.raises(SystemExit) as exc:  # argparse's own one-line answer to an unknown method
        main.main(base + ["--precision", "int8", "--calib_method", "percentile"])
    assert exc.value.code == 2 and "invalid choice: 'percentile'" in capsys.readouterr().err
    assert cli_boundary(main.main, base + ["--precision", "fp8"]) == 2
    assert "CUDA GPU" in capsys.readouterr().err
    fp32, _ = onnx_for(lite0, (-1, 3, 224, 224))
    with pytest.raises(ArtTRTError, match="--calib_method entropy is not offered for fp8: one of max"):
        convert_precision(fp32, "fp8", lite0, CalibOptions(calib_method="entropy"), DataOptions(str(demo_data)))


def test_fp8_on_the_ort_cpu_provider_is_refused_before_calibrating(lite0, tmp_path):
    spec = RunSpec("onnxrt", "fp8", device="cuda", options=Options(provider="cpu"))
    with pytest.raises(ArtTRTError, match="no fp8 kernels"):  # not "dataset does not exist": nothing was calibrated
        make_runner(spec, lite0, DataOptions(str(tmp_path / "none")))


def test_a_session_per_prepared_batch_size_runs_each_size_and_answers_as_one_session(tmp_path):
    """ONNX Runtime's CUDA Conv rebuilds its cuDNN plans whenever the input shape changes (about 100 ms a served
    ResNet-50 batch on the H200), so on the CUDA provider each prepared batch size runs on a session of its own. The
    same rule, forced on here on the CPU: each size goes to its own session, an unprepared size to the first one,
    and the answers equal one shared session's."""
    from utils.backends.onnxrt import OnnxRuntimeRunner

    path, _ = onnx_for(load_network("resnet18", seed=0), (-1, 3, 64, 64))
    net = load_network("resnet18", seed=0)
    x = torch.randn(4, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    with OnnxRuntimeRunner(path, net.preprocess, "cpu", session_per_batch=True) as split, \
            OnnxRuntimeRunner(path, net.preprocess, "cpu") as shared:
        assert shared.session_per_batch is False and split.session_per_batch is True  # the CPU's default: shared
        for b in (4, 1, 4, 2):
            split.prepare((b, 3, 64, 64))
            shared.prepare((b, 3, 64, 64))
        assert sorted(split.sessions) == [1, 2, 4] and not shared.sessions
        assert split.sessions[4] is split.session  # the first prepared size keeps the first session
        assert len({id(s) for s in split.sessions.values()}) == 3
        runs = {b: 0 for b in split.sessions}
        for b, sess in split.sessions.items():
            real = sess.run
            sess.run = lambda *a, _b=b, _real=real, **k: (runs.__setitem__(_b, runs[_b] + 1), _real(*a, **k))[1]
        for n in (4, 1, 2, 4, 3):
            torch.testing.assert_close(split.infer(x[:n]), shared.infer(x[:n]), rtol=1e-4, atol=1e-4)
        assert runs == {4: 3, 1: 1, 2: 1}  # 3 is not prepared: the first session answers it
        assert split.info()["onnxruntime_session_per_batch"] is True
        assert split.info()["onnxruntime_sessions"] == [1, 2, 4] and shared.info()["onnxruntime_sessions"] is None
    assert not split.sessions and split.session is None  # closed with the runner
    with split:  # opened again: a fresh first session takes the first size prepared
        assert not split.sessions
        split.prepare((2, 3, 64, 64))
        assert list(split.sessions) == [2] and split.sessions[2] is split.session


def test_only_the_cuda_provider_splits_sessions_by_default(tmp_path, monkeypatch):
    """The CUDA provider re-plans per shape (split); the CPU has no such plan, and the TensorRT provider would build
    one engine per session (not measured): both share one session unless asked."""
    from utils.backends.onnxrt import OnnxRuntimeRunner

    path, _ = onnx_for(load_network("resnet18", seed=0), (-1, 3, 64, 64))
    pre = load_network("resnet18", seed=0).preprocess
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)  # constructing opens nothing: no GPU needed
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    assert [OnnxRuntimeRunner(path, pre, p).session_per_batch for p in ("cuda", "tensorrt", "cpu")] == [
        True, False, False]
    assert OnnxRuntimeRunner(path, pre, "tensorrt", session_per_batch=True).session_per_batch is True


@pytest.mark.parametrize("precision, level", [("fp16", "ORT_ENABLE_EXTENDED"), ("fp32", "ORT_ENABLE_ALL")])
def test_fp16_sessions_on_the_cpu_skip_the_layout_passes_that_crash(tmp_path, monkeypatch, precision, level):
    """ONNX Runtime 1.24's "all" CPU optimisations crash the process building a session for ModelOpt's fp16
    vit_b_16 (SIGSEGV, measured here; "extended" builds it): fp16/bf16 files on the CPU provider get "extended",
    said in the record; other files keep ONNX Runtime's default."""
    import onnxruntime as ort

    from tests.conftest import tiny_onnx
    from utils.backends.onnxrt import OnnxRuntimeRunner
    from utils.data.preprocess import Preprocess

    levels = []
    real = ort.InferenceSession

    def noted(path, opts, **kw):
        levels.append(opts.graph_optimization_level)
        return real(path, opts, **kw)

    monkeypatch.setattr(ort, "InferenceSession", noted)
    with OnnxRuntimeRunner(tiny_onnx(tmp_path / "m.onnx"), Preprocess(resize=8, crop=8), "cpu",
                           precision=precision) as runner:
        said = runner.info().get("graph_optimization")
    assert levels == [getattr(ort.GraphOptimizationLevel, level)]
    assert said == ("extended (fp16/bf16 on the CPU provider)" if precision == "fp16" else None)
