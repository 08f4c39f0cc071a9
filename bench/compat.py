"""Old module paths keep working: configs, results and scripts written before the layout moved still load.

A results JSON records its method's ``_target_`` (``bench.methods.human_machine.eac.EAC``), a user's config may name
``bench.methods.codecs.pillow.PillowCodec``, a script may ``import bench.runner``. Each old path is an alias
of the module that now holds the code (the same module object, so classes compare equal), with a
``DeprecationWarning`` that names the new path.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys
import warnings
from types import ModuleType

#: modules that became packages of the same name: their old names resolve through the package (``forward``)
BECAME_PACKAGES = {"bench.metrics": "bench.metrics.image", "bench.training": "bench.training.loop"}

#: old dotted module path -> where the code lives now
MOVED: dict[str, str] = {
    "bench.video_metrics": "bench.metrics.video",
    "bench.quality_suite": "bench.metrics.jpeg_ai",
    "bench.app": "bench.running.app",
    "bench.keys": "bench.running.keys",
    "bench.runner": "bench.running.runner",
    "bench.store": "bench.running.store",
    "bench.evaluation": "bench.running.evaluation",
    "bench.jobs": "bench.running.jobs",
    "bench.catalog": "bench.running.catalog",
    "bench.train_data": "bench.training.data",
    "bench.train_codec": "bench.training.codec",
    "bench.codec_weights": "bench.training.codec_export",
    "bench.training.codec_weights": "bench.training.codec_export",
    "bench.module_export": "bench.training.export",
    "bench.weight_files": "bench.training.weights",
    "bench.digests": "bench.io.digests",
    "bench.images": "bench.io.images",
    "bench.video": "bench.io.video",
    "bench.fiftyone_export": "bench.analysis.fiftyone",
    "bench.report": "bench.analysis.report",
    "bench.leaderboard": "bench.analysis.leaderboard",
    "bench.bdrate": "bench.analysis.bdrate",
    "bench.rdcurves": "bench.analysis.rdcurves",
    "bench.check": "bench.analysis.check",
    "bench.tasks.coco_eval": "bench.tasks.evaluators.coco",
    "bench.tasks.onnx_torch": "bench.tasks.runtimes.onnx_torch",
    "bench.methods.pillow_codecs": "bench.methods.codecs.pillow",
    "bench.methods.imagecodecs_codecs": "bench.methods.codecs.imagecodecs",
    "bench.methods.heif_codec": "bench.methods.codecs.heif",
    "bench.methods.vtm": "bench.methods.codecs.vtm",
    "bench.methods.video_codecs": "bench.methods.codecs.video",
    "bench.methods.compressai_codecs": "bench.methods.learned.compressai",
    "bench.methods.ssf2020": "bench.methods.learned.ssf2020",
    "bench.methods.checkpoint_files": "bench.methods.learned.checkpoints",
    "bench.methods.learned_losses": "bench.methods.learned.losses",
    "bench.methods.eac": "bench.methods.human_machine.eac",
    "bench.methods.sicmh": "bench.methods.human_machine.sicmh",
    "bench.methods.sicmh_model": "bench.methods.human_machine.sicmh_model",
    "bench.methods.sicmh_training": "bench.methods.human_machine.sicmh_training",
    "bench.methods.latent_scalable": "bench.methods.human_machine.latent_scalable",
    "bench.methods.compressed_domain": "bench.methods.human_machine.compressed_domain",
    "bench.methods.feature_stream": "bench.methods.human_machine.feature_stream",
    "bench.methods.task_split": "bench.methods.human_machine.task_split",
}


class _Alias(importlib.abc.Loader):
    def __init__(self, new: str):
        self.new = new

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType:
        warnings.warn(f"{spec.name} moved to {self.new}", DeprecationWarning, stacklevel=2)
        return importlib.import_module(self.new)

    def exec_module(self, module: ModuleType) -> None:
        return None  # the module the alias names is already executed


class MovedModules(importlib.abc.MetaPathFinder):
    """Finds an old module path (:data:`MOVED`) and hands back the module that now holds its code."""

    def find_spec(self, fullname: str, path: object = None, target: object = None) -> importlib.machinery.ModuleSpec:
        new = MOVED.get(fullname)
        if new is None:
            return None
        return importlib.util.spec_from_loader(fullname, _Alias(new))


def forward(package: str, name: str) -> object:
    """A name the old module ``package`` had, from the module that holds it now (for a package's ``__getattr__``)."""
    new = BECAME_PACKAGES[package]
    module = importlib.import_module(new)
    try:
        value = getattr(module, name)
    except AttributeError:
        raise AttributeError(f"module {package!r} has no attribute {name!r}") from None
    warnings.warn(f"{package}.{name} moved to {new}.{name}", DeprecationWarning, stacklevel=3)
    return value


def install() -> None:
    """Put the alias finder on ``sys.meta_path`` once (before the path finders: an old name must not shadow)."""
    if not any(isinstance(f, MovedModules) for f in sys.meta_path):
        sys.meta_path.insert(0, MovedModules())
