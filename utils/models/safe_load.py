"""Loading a pickled checkpoint (an Ultralytics .pt) without letting it run code.

PyTorch's own safe loader (torch.load(weights_only=True)) refuses every global it does not know; the model
classes of a full checkpoint (torch.nn and Ultralytics layers) must be allowed by name for it to load. That
is not enough on its own: the weights-only unpickler lets an allowed class be *called* (the REDUCE opcode),
and some Ultralytics modules read or download files in their constructors. So before loading, the pickle's
opcodes are read (never executed) and the checkpoint is refused unless

  - every global it names is in PyTorch's weights-only allow-list, or is an nn.Module subclass defined in
    torch.nn.modules or ultralytics.nn (checked on the imported class itself, not on its name alone), and
  - those module classes are only created the way pickle stores modules (NEWOBJ, then __setstate__), never
    called with arguments (REDUCE).

Usage:
    ckpt = load_checkpoint(Path("best.pt"))   # a dict; raises ArtTRTError with a sentence otherwise
"""
from __future__ import annotations

import ast
import importlib
import pickletools
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING, Any, Dict, List, Set, Tuple

import yaml

from utils.core.errors import ArtTRTError, first_line
from utils.core.fileio import read_text, regular_file

if TYPE_CHECKING:
    import torch
    import torchvision
else:
    from utils.core.deps import torch, torchvision


MODULE_PREFIXES = ("torch.nn.modules.", "ultralytics.nn.")
CONVERT_HINT = ("if you trust the file, re-save its model in a Python you trust (the layers only: "
                "from ultralytics import YOLO; YOLO('best.pt').save('best-clean.pt')), or export it to ONNX "
                "there and pass --onnx")


def _pickle_bytes(path: Path) -> bytes:
    """The pickle that torch.load will read: the data.pkl of a torch.save zip file. torch.load takes a file for a zip
    by its first four bytes and reads anything else as the legacy format, while Python's zipfile finds a zip by its
    end: a file that is both (a legacy pickle with a zip appended) would have the harmless pickle checked and the
    other one loaded. So only a file that starts as a zip, and is one, is read; the legacy format is refused."""
    with open(path, "rb") as f:
        head = f.read(4)
    if head != b"PK\x03\x04" or not zipfile.is_zipfile(path):
        raise ArtTRTError(f"refusing to load {path.name}: it is not a PyTorch zip checkpoint (torch.save's format "
                          f"since PyTorch 1.6); {CONVERT_HINT}")
    try:
        with zipfile.ZipFile(path) as z:
            names = [n for n in z.namelist() if n.endswith("data.pkl")]
            if len(names) != 1:
                raise ArtTRTError(f"{path} is a zip file but not a PyTorch checkpoint (no single data.pkl)")
            return z.read(names[0])
    except (zipfile.BadZipFile, OSError, RuntimeError, ValueError) as err:
        raise ArtTRTError(f"{path} is a damaged zip file ({first_line(err)})") from err


def scan_globals(data: bytes) -> Tuple[Set[str], Set[str]]:
    """(every global the pickle names, the globals it calls with REDUCE), read from its opcodes.

    A small symbolic stack follows what pickle would push: enough to know which global (directly, or
    through the memo) sits under the arguments of each REDUCE. Anything it cannot follow counts as unknown,
    and an unknown callee is refused by the caller."""
    names: Set[str] = set()
    reduced: Set[str] = set()
    stack: List[Any] = []
    marks: List[int] = []
    memo: Dict[int, Any] = {}
    strings: List[str] = []
    unknown = object()
    try:
        ops = list(pickletools.genops(data))
    except Exception as err:  # pickletools raises ValueError and others for a broken stream
        raise ArtTRTError(f"the checkpoint's pickle cannot be read: {err}") from err
    for op, arg, _ in ops:
        name = op.name
        if name in ("GLOBAL", "INST"):
            g = str(arg).replace(" ", ".").replace("__builtin__.", "builtins.")  # protocol 2 names builtins so
            names.add(g)
            stack.append(("global", g))
        elif name == "STACK_GLOBAL":
            attr, mod = (stack.pop() if stack else unknown), (stack.pop() if stack else unknown)
            g = f"{mod[1]}.{attr[1]}" if isinstance(mod, tuple) and isinstance(attr, tuple) and \
                mod[0] == "str" and attr[0] == "str" else "<unknown>"
            names.add(g)
            stack.append(("global", g))
        elif name in ("BINUNICODE", "SHORT_BINUNICODE", "UNICODE", "BINUNICODE8", "SHORT_BINSTRING", "BINSTRING",
                      "STRING"):
            strings.append(str(arg))
            stack.append(("str", str(arg)))
        elif name == "MARK":
            marks.append(len(stack))
        elif name in ("TUPLE", "LIST", "DICT", "FROZENSET", "OBJ"):
            start = marks.pop() if marks else 0
            del stack[start:]
            stack.append(unknown)
        elif name in ("APPENDS", "SETITEMS", "ADDITEMS"):
            start = marks.pop() if marks else 0
            del stack[start:]
        elif name in ("TUPLE1", "TUPLE2", "TUPLE3"):
            n = int(name[-1])
            del stack[len(stack) - n:]
            stack.append(unknown)
        elif name in ("APPEND", "BUILD"):
            stack.pop()
        elif name == "SETITEM":
            del stack[-2:]
        elif name in ("REDUCE", "NEWOBJ", "NEWOBJ_EX"):
            stack.pop()  # the arguments (NEWOBJ_EX: kwargs, then args)
            if name == "NEWOBJ_EX":
                stack.pop()
            callee = stack.pop() if stack else unknown
            if name == "REDUCE":
                reduced.add(callee[1] if isinstance(callee, tuple) and callee[0] == "global" else "<unknown>")
            stack.append(unknown)
        elif name in ("PUT", "BINPUT", "LONG_BINPUT"):
            memo[int(arg)] = stack[-1] if stack else unknown
        elif name in ("GET", "BINGET", "LONG_BINGET"):
            stack.append(memo.get(int(arg), unknown))
        elif name == "MEMOIZE":
            memo[len(memo)] = stack[-1] if stack else unknown
        elif name == "POP":
            stack.pop()
        elif name == "POP_MARK":
            start = marks.pop() if marks else 0
            del stack[start:]
        elif name == "DUP":
            stack.append(stack[-1])
        elif name in ("PROTO", "FRAME", "STOP"):
            pass
        elif name in ("PERSID", "BINPERSID"):
            if name == "BINPERSID":
                stack.pop()
            stack.append(unknown)
        else:  # literals (ints, floats, None, bools, bytes, empty containers)
            stack.append(unknown)
    return names, reduced


def _module_class(name: str) -> Any:
    """The nn.Module subclass named, where it is one defined under torch.nn.modules or ultralytics.nn; else None."""

    if not name.startswith(MODULE_PREFIXES):
        return None
    module, _, attr = name.rpartition(".")
    try:
        obj = getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError):
        return None
    return obj if isinstance(obj, type) and issubclass(obj, torch.nn.Module) else None


def load_checkpoint(path: Path) -> Dict[str, Any]:
    """A full checkpoint loaded with PyTorch's weights-only unpickler and only layer classes allowed."""

    regular_file(path, "checkpoint")
    if path.stat().st_size == 0:
        raise ArtTRTError(f"checkpoint {path} is empty (0 bytes)")
    names, reduced = scan_globals(_pickle_bytes(path))
    from torch._weights_only_unpickler import _get_allowed_globals

    builtin = set(_get_allowed_globals())
    classes = {n: _module_class(n) for n in names if n not in builtin}
    refused = sorted(n for n, c in classes.items() if c is None)
    if refused:
        raise ArtTRTError(f"refusing to load {path.name}: it names {refused[0]}"
                          + (f" (and {len(refused) - 1} more)" if len(refused) > 1 else "")
                          + f", which loading could run; {CONVERT_HINT}")
    called = sorted(n for n in reduced if n in classes or n == "<unknown>")
    if called:
        raise ArtTRTError(f"refusing to load {path.name}: it calls {called[0]} while loading, which a saved model "
                          f"never does; {CONVERT_HINT}")
    try:
        with torch.serialization.safe_globals(list(classes.values())):
            ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # UnpicklingError, RuntimeError and friends: one sentence
        raise ArtTRTError(f"cannot load {path.name} safely ({first_line(err)}); {CONVERT_HINT}") from err
    if not isinstance(ckpt, dict):
        raise ArtTRTError(f"{path.name} holds a {type(ckpt).__name__}, not an Ultralytics checkpoint (a dict)")
    return ckpt


# A model description (.yaml) is data, but Ultralytics builds it with eval() of its `activation:` line and looks its
# layer names up among the globals of ultralytics.nn.tasks. So before Ultralytics sees it, the description is read
# here (YAML's safe loader, a regular UTF-8 file) and checked: the activation must be a torch.nn class called with
# literal arguments (the form Ultralytics' own restricted loader accepts, ultralytics.nn.tasks._SafeLoad.activation),
# every layer a torch.nn, torchvision.ops or Ultralytics nn.Module class, every argument a literal. Ultralytics then
# builds the checked dict itself (nothing re-read from disk), in its restricted mode where it has one.
MAX_CONFIG_BYTES = 1 << 20
LAYER_SECTIONS = ("backbone", "head")


def _no_alias_loader() -> Any:
    class NoAliasLoader(yaml.SafeLoader):
        """YAML's safe loader without anchors and aliases: a model description never needs them, and aliases of
        aliases make a file of a few KB into 10^9 nodes (a "billion laughs")."""

        def compose_node(self, parent: Any, index: Any) -> Any:
            if self.check_event(yaml.AliasEvent):
                raise ArtTRTError("the model description uses YAML aliases (*name), which a YOLO model .yaml never "
                                  "needs: refusing it")
            return super().compose_node(parent, index)

    return NoAliasLoader


def _literal(value: Any) -> bool:
    if value is None or isinstance(value, (bool, int, float, str)):
        return True
    if isinstance(value, list):
        return all(_literal(v) for v in value)
    return False


def check_activation(spec: Any) -> str:
    """The activation line, if it is `nn.Class(literals)` or `torch.nn.Class(literals)` naming an nn.Module class;
    else one sentence."""

    bad = ArtTRTError(f"the model description's activation {str(spec)[:80]!r} is not a torch.nn class called with "
                      "literal arguments (e.g. nn.SiLU() or nn.LeakyReLU(0.1)): refusing to build it")
    if not isinstance(spec, str) or len(spec) > 200:
        raise bad
    try:
        call = ast.parse(spec.strip(), mode="eval").body
    except SyntaxError:
        raise bad from None
    if not isinstance(call, ast.Call):
        raise bad
    parts: List[str] = []
    node: Any = call.func
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if not isinstance(node, ast.Name):
        raise bad
    parts.append(node.id)
    if parts[1:] not in (["nn"], ["nn", "torch"]):
        raise bad
    cls = getattr(torch.nn, parts[0], None) if not parts[0].startswith("_") else None
    if not (isinstance(cls, type) and issubclass(cls, torch.nn.Module)):
        raise bad
    for arg in [*call.args, *(k.value for k in call.keywords)]:
        try:
            ast.literal_eval(arg)
        except ValueError:
            raise bad from None
    if any(k.arg is None for k in call.keywords):  # **kwargs
        raise bad
    return spec


def _layer_class(name: Any) -> Any:
    """The nn.Module class a layer row names, resolved as Ultralytics resolves it, or None."""

    if not isinstance(name, str) or not name.isascii() or name.startswith("_") or "__" in name:
        return None
    if name.startswith("nn."):
        obj = getattr(torch.nn, name[3:], None) if name[3:].isidentifier() else None
    elif name.startswith("torchvision.ops."):
        obj = getattr(torchvision.ops, name[16:], None) if name[16:].isidentifier() else None
    elif name.isidentifier():
        from ultralytics.nn import tasks

        obj = vars(tasks).get(name)
    else:
        obj = None
    return obj if isinstance(obj, type) and issubclass(obj, torch.nn.Module) else None


def load_model_config(path: Path) -> Dict[str, Any]:
    """A YOLO model description read without running anything, checked as the comment above says; one sentence
    naming what is refused."""

    _NoAliasLoader = _no_alias_loader()
    size = regular_file(path, "model description").stat().st_size
    if size > MAX_CONFIG_BYTES:
        raise ArtTRTError(f"model description {path} is {size} bytes: not a YOLO model .yaml")
    text = read_text(path, "model description", max_bytes=MAX_CONFIG_BYTES)
    try:
        cfg = yaml.load(text, Loader=_NoAliasLoader)  # noqa: S506 - a SafeLoader that also refuses aliases
    except ArtTRTError as err:
        raise ArtTRTError(f"model description {path}: {err}") from None
    except yaml.YAMLError as err:
        raise ArtTRTError(f"model description {path} is not valid YAML ({first_line(err)})") from None
    except RecursionError:
        raise ArtTRTError(f"model description {path} is nested too deeply to be a YOLO model .yaml") from None
    if not isinstance(cfg, dict) or not all(isinstance(k, str) for k in cfg):
        raise ArtTRTError(f"model description {path} is not a YAML mapping of a YOLO model")
    if not all(_literal(v) or isinstance(v, dict) for v in cfg.values()):
        raise ArtTRTError(f"model description {path} holds values that are not plain data")
    if cfg.get("channels", 3) != 3 or isinstance(cfg.get("channels"), bool):
        raise ArtTRTError(f"model description {path} takes {cfg.get('channels')!r} input channels: ArtTRT feeds "
                          "RGB images (3)")
    nc = cfg.get("nc")
    if nc is not None and not (isinstance(nc, int) and not isinstance(nc, bool) and 1 <= nc <= 1_000_000):
        raise ArtTRTError(f"model description {path}: nc {nc!r} is not a class count")
    if cfg.get("activation") is not None:
        check_activation(cfg["activation"])
    rows = []
    for section in LAYER_SECTIONS:
        if not isinstance(cfg.get(section), list):
            raise ArtTRTError(f"model description {path} has no '{section}' list of layers")
        rows += cfg[section]
    for i, row in enumerate(rows):
        if not (isinstance(row, list) and len(row) == 4 and isinstance(row[1], int) and isinstance(row[3], list)):
            raise ArtTRTError(f"model description {path}, layer {i}: not [from, repeats, module, args]")
        if _layer_class(row[2]) is None:
            raise ArtTRTError(f"model description {path}, layer {i}: {str(row[2])[:60]!r} is not a torch.nn, "
                              "torchvision.ops or Ultralytics layer class: refusing to build it")
        if not _literal(row[0]) or not _literal(row[3]):
            raise ArtTRTError(f"model description {path}, layer {i}: its arguments are not plain data")
    scales = cfg.get("scales")
    if scales is not None and not (isinstance(scales, dict) and all(
            isinstance(v, list) and len(v) == 3 and all(isinstance(x, (int, float)) and not isinstance(x, bool)
                                                        for x in v) for v in scales.values())):
        raise ArtTRTError(f"model description {path}: 'scales' is not a mapping of [depth, width, max_channels]")
    return cfg
