"""ONNX task networks as differentiable PyTorch modules, so learned methods can train through them.

onnxruntime runs an ONNX network fast but gives no gradients. ``onnx2torch``
rebuilds the same graph from torch ops (an ``fx.GraphModule`` holding the
ONNX weights), so a loss on its output back-propagates to the input image.
:func:`load_onnx_module` does that once per file and returns an
:class:`OnnxModule`: frozen, in eval mode, taking a batch even where the
export fixed the batch at 1 (it then runs image by image; such exports often
bake the batch size into a Reshape and would mix images silently otherwise).

Errors name the file: a missing file, a missing package, and every ONNX op
(type, domain, opset) onnx2torch has no converter for.
"""

from __future__ import annotations

import copy
import os
import threading
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from bench.tasks.base import TaskUnavailable

if TYPE_CHECKING:
    import onnx

ONNX_DOMAIN_ALIASES = ("", "ai.onnx")

_cache: dict[tuple[str, int, int], torch.nn.Module] = {}
_cache_lock = threading.Lock()


class OnnxConversionError(RuntimeError):
    """onnx2torch cannot rebuild this ONNX graph in torch (the message names the file and the ops)."""


def _static_dims(value_info: Any) -> list[int | str]:
    """Declared dims of a graph input/output: ints where fixed, the symbol (or "?") where not."""
    return [
        d.dim_value if d.HasField("dim_value") else (d.dim_param or "?") for d in value_info.type.tensor_type.shape.dim
    ]


def unsupported_ops(model: onnx.ModelProto) -> list[str]:
    """``"OpType (domain 'd', opset n)"`` for every distinct op of ``model`` onnx2torch cannot convert."""
    from onnx2torch.node_converters.registry import get_converter

    opsets = {imp.domain: imp.version for imp in model.opset_import}
    for alias in ONNX_DOMAIN_ALIASES:  # the default domain may be declared under either name
        if alias in opsets:
            opsets.setdefault("", opsets[alias])
    missing: dict[str, None] = {}
    for node in model.graph.node:
        domain = "" if node.domain in ONNX_DOMAIN_ALIASES else node.domain
        version = opsets.get(domain)
        label = f"{node.op_type} (domain {node.domain or 'ai.onnx'!r}, opset {version})"
        if version is None:
            missing[label] = None
            continue
        try:
            get_converter(operation_type=node.op_type, version=version, domain=domain)
        except NotImplementedError:
            missing[label] = None
    return list(missing)


class OnnxModule(torch.nn.Module):
    """A converted ONNX graph taking ``B x C x H x W`` and returning every graph output with a batch dim.

    ``fixed_batch_one``: the export declares batch 1, so a batch runs image by
    image; per-image outputs declared with a leading 1 are concatenated, the
    others (e.g. NanoDet-m-320's ``[N, 80]``) stacked into a new batch dim.
    """

    def __init__(
        self,
        graph: torch.nn.Module,
        path: Path,
        input_shape: Sequence[int | str],
        output_shapes: Sequence[Sequence[int | str]],
    ):
        super().__init__()
        #: the onnx2torch ``fx.GraphModule``
        self.graph = graph
        self.path = path
        #: declared shapes of the (only) input and of every output, as in the ONNX file
        self.input_shape = list(input_shape)
        self.output_shapes = [list(s) for s in output_shapes]
        self.fixed_batch_one = bool(self.input_shape) and self.input_shape[0] == 1

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        if x.ndim != len(self.input_shape):
            raise ValueError(f"{self.path.name} takes input {self.input_shape}, got a tensor {tuple(x.shape)}")
        if not self.fixed_batch_one:
            return self._run(x)
        per_image = [self._run(x[i : i + 1]) for i in range(x.shape[0])]
        out = []
        for k, shape in enumerate(self.output_shapes):
            parts = [outs[k] for outs in per_image]
            has_batch = len(shape) == parts[0].ndim and bool(shape) and shape[0] == 1
            out.append(torch.cat(parts, 0) if has_batch else torch.stack(parts, 0))
        return out

    def _run(self, x: torch.Tensor) -> list[torch.Tensor]:
        with warnings.catch_warnings():
            # onnx2torch's Slice indexes with a list, which torch deprecates (same result; the tests compare
            # every output with onnxruntime's, so a change of meaning would show)
            warnings.filterwarnings("ignore", message="Using a non-tuple sequence for multidimensional indexing")
            return _as_list(self.graph(x))

    def extra_repr(self) -> str:
        return f"{self.path.name}: input {self.input_shape}, outputs {self.output_shapes}"


def _as_list(out: Any) -> list[torch.Tensor]:
    return list(out) if isinstance(out, (list, tuple)) else [out]


def _read(path: Path) -> onnx.ModelProto:
    try:
        import onnx
        import onnx2torch  # noqa: F401
    except ImportError as exc:
        raise TaskUnavailable(
            f"converting {path} to torch needs onnx and onnx2torch: pip install onnx2torch ({exc})"
        ) from exc
    try:
        return onnx.load(str(path))
    except Exception as exc:  # protobuf's DecodeError and friends: not an ONNX file
        raise OnnxConversionError(f"{path} is not a readable ONNX model: {exc}") from exc


def convert_model(model: onnx.ModelProto, label: str | os.PathLike) -> OnnxModule:
    """An in-memory ONNX graph (a file's, or a part cut out of one) as an :class:`OnnxModule`; errors name ``label``."""
    from onnx2torch import convert

    path = Path(label)
    missing = unsupported_ops(model)
    if missing:
        raise OnnxConversionError(
            f"onnx2torch cannot convert {path}: no converter for {', '.join(missing)}. Run this network with "
            "onnxruntime instead (no gradients), or re-export it without these ops"
        )
    initializers = {t.name for t in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in initializers]
    if len(inputs) != 1:
        raise OnnxConversionError(f"{path} has {len(inputs)} inputs ({[i.name for i in inputs]}); one is supported")
    try:
        graph = convert(model)
    except NotImplementedError as exc:  # an op whose attributes onnx2torch does not support
        raise OnnxConversionError(f"onnx2torch cannot convert {path}: {exc}") from exc
    outputs = [_static_dims(o) for o in model.graph.output]
    return OnnxModule(graph, path, _static_dims(inputs[0]), outputs)


def _convert(path: Path) -> Any:
    return convert_model(_read(path), path)


def load_onnx_module(path: str | os.PathLike, frozen: bool = True) -> torch.nn.Module:
    """The ONNX network at ``path`` as a torch module in eval mode; its parameters frozen unless ``frozen=False``.

    Converted once per file (and again when the file changes); frozen calls
    share that module, ``frozen=False`` gets a private trainable copy.
    """
    p = Path(os.path.expanduser(str(path)))
    if not p.is_file():
        raise FileNotFoundError(f"ONNX model file {p} not found")
    stat = p.stat()
    key = (str(p.resolve()), stat.st_mtime_ns, stat.st_size)
    with _cache_lock:
        module = _cache.get(key)
        if module is None:
            module = _convert(p).eval()
            for param in module.parameters():
                param.requires_grad_(False)
            _cache[key] = module
    if frozen:
        return module
    trainable = copy.deepcopy(module)
    for param in trainable.parameters():
        param.requires_grad_(True)
    return trainable


@dataclass(frozen=True)
class GraphCut:
    """A tensor of an ONNX graph that alone carries everything the rest of the graph needs from its input."""

    name: str
    #: its inferred shape, batch first
    shape: tuple[int | str, ...]
    #: input height / its height (None when that is not a whole number)
    stride: int | None

    def describe(self) -> str:
        dims = " x ".join(str(d) for d in self.shape[1:])
        return f"{self.name} ({dims}" + (f", stride {self.stride})" if self.stride else ")")


def single_tensor_cuts(model: onnx.ModelProto) -> list[GraphCut]:
    """Every tensor after which the rest of the graph reads only that tensor (and constants), in graph order.

    Cutting the graph there gives a front (input -> the tensor) and a back
    (the tensor -> every output) that together compute exactly the whole graph.
    """
    from onnx import shape_inference

    graph = shape_inference.infer_shapes(model).graph
    initializers = {t.name for t in graph.initializer}
    inputs = [i.name for i in graph.input if i.name not in initializers]
    shapes = {v.name: tuple(_static_dims(v)) for v in [*graph.value_info, *graph.input, *graph.output]}
    outputs = {o.name for o in graph.output}
    nodes = list(graph.node)
    dynamic = set(inputs)  # tensors that depend on the input (the rest the back can make itself)
    for node in nodes:
        if any(t in dynamic for t in node.input):
            dynamic.update(t for t in node.output if t)
    last_use = {t: len(nodes) for t in outputs}
    for i, node in enumerate(nodes):
        for t in node.input:
            if t not in outputs:
                last_use[t] = i
    in_height = shapes.get(inputs[0], ())[2:3] if inputs else ()
    live, cuts, seen = set(inputs), [], set()
    for i, node in enumerate(nodes):
        live.update(t for t in node.output if t in dynamic)
        live = {t for t in live if last_use.get(t, -1) > i}
        if len(live) == 1:
            (name,) = live
            if name in seen or name in outputs or name in inputs:
                continue
            seen.add(name)
            shape = shapes.get(name, ())
            stride = None
            if len(shape) == 4 and in_height and all(isinstance(d, int) and d > 0 for d in (*in_height, shape[2])):
                if in_height[0] % shape[2] == 0:
                    stride = in_height[0] // shape[2]
            cuts.append(GraphCut(name, shape, stride))
    return cuts


def resolve_cut(cuts: Sequence[GraphCut], split: str, label: str) -> GraphCut:
    """``split`` as a cut: ``stride<N>`` is the last cut at stride N, anything else a tensor name."""
    if split.startswith("stride") and split[6:].isdigit():
        at = [c for c in cuts if c.stride == int(split[6:])]
        if at:
            return at[-1]
    for cut in cuts:
        if cut.name == split:
            return cut
    strides = sorted({c.stride for c in cuts if c.stride})
    raise OnnxConversionError(
        f"{label}: no single-tensor cut {split!r}; cuts (by stride: "
        f"{', '.join(f'stride{s}' for s in strides) or 'none'}): {'; '.join(c.describe() for c in cuts)}"
    )


_split_cache: dict[tuple[str, int, int, str], tuple[OnnxModule, OnnxModule, GraphCut]] = {}


def load_onnx_split(path: str | os.PathLike, split: str) -> tuple[OnnxModule, OnnxModule, GraphCut]:
    """The ONNX network at ``path`` cut at ``split`` (see :func:`resolve_cut`): front and back, frozen, cached.

    The front maps the network input to the cut tensor, the back maps that
    tensor to every output of the graph; both are the file's own nodes and
    weights (``onnx.utils.Extractor``), converted by onnx2torch.
    """
    p = Path(os.path.expanduser(str(path)))
    if not p.is_file():
        raise FileNotFoundError(f"ONNX model file {p} not found")
    stat = p.stat()
    key = (str(p.resolve()), stat.st_mtime_ns, stat.st_size, split)
    with _cache_lock:
        hit = _split_cache.get(key)
        if hit is None:
            from onnx.shape_inference import infer_shapes
            from onnx.utils import Extractor

            model = infer_shapes(_read(p))  # the extractor types the new inputs and outputs from value_info
            cut = resolve_cut(single_tensor_cuts(model), split, str(p))
            initializers = {t.name for t in model.graph.initializer}
            inputs = [i.name for i in model.graph.input if i.name not in initializers]
            extractor = Extractor(model)
            front = extractor.extract_model(inputs, [cut.name])
            back = extractor.extract_model([cut.name], [o.name for o in model.graph.output])
            halves = []
            for part, name in ((front, "front"), (back, "back")):
                module = convert_model(part, f"{p} ({name} of the cut at {cut.name})").eval()
                for param in module.parameters():
                    param.requires_grad_(False)
                halves.append(module)
            hit = (halves[0], halves[1], cut)
            _split_cache[key] = hit
    return hit


def clear_cache() -> None:
    """Forget every converted module (tests; or to free memory)."""
    with _cache_lock:
        _cache.clear()
        _split_cache.clear()
