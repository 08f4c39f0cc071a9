"""CompressAI's learned image codecs as SBAR methods, with real entropy coding.

One adapter covers the zoo architectures (Ballé 2018 factorized / hyperprior,
Minnen 2018 mean-scale / joint autoregressive, Cheng 2020 anchor / attention);
the rate points are CompressAI's qualities. Everything follows
``compressai.utils.eval_model`` so our numbers can be checked against it:

- the image becomes a float tensor in [0, 1] as ``torchvision``'s ``ToTensor``
  makes it, is zero-padded (centred) to a multiple of 64 with
  ``compressai.ops.compute_padding``, and goes through ``model.compress``;
- the decoder runs ``model.decompress``, crops the padding and rounds
  ``(x_hat * 255).clamp(0, 255)`` to 8 bits. eval_model (1.2.x) rounds the
  same way before its metrics, so it measures exactly our uint8 image; only
  its arithmetic differs: it keeps those values in float32 and returns PSNR as
  a float32, which puts it a few 1e-6 dB from the harness's exact PSNR;
- eval_model's bpp counts the entropy-coded strings only; ours counts the
  header too (about 15 bytes, 3e-4 bpp on a Kodak image).

The bitstream is a container, not just CompressAI's strings: a ``header``
stream (format version, quality, image size, latent shape, and the count and
length of every entropy-coded string, all unsigned LEB128 varints) and one
stream per string list, ``y`` then ``z`` (the order of ``compress``'s
``strings``). ``Bitstream.num_bytes()`` therefore counts the header too; the
payload streams alone are what eval_model's bpp counts. :func:`pack` and
:func:`unpack` turn a bitstream into one file and back.

Weights come either from CompressAI's zoo (downloaded into the torch hub cache,
``$TORCH_HOME/hub/checkpoints``) or from local checkpoints named in the config.
Nothing is loaded at construction: ``bench list`` builds every method.
Models are loaded on first use of a quality and cached.

The entropy coder is the one configured (``ans``, CompressAI's only built-in);
the autoregressive models (mbt2018, cheng2020) code ``y`` with rANS whatever
it says, as CompressAI itself does.
"""

from __future__ import annotations

import contextlib
import os
import urllib.error
import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar
from urllib.parse import urlparse

import numpy as np

from bench.methods.base import HUMAN, Bitstream, CodecError, Family, Method, MethodUnavailable
from bench.methods.container import get_varint, put_varint
from bench.provenance import installed_versions

if TYPE_CHECKING:  # torch is imported lazily: listing methods must stay cheap
    import torch

#: zoo architectures and their qualities (``compressai.zoo.image.cfgs``)
QUALITIES: dict[str, range] = {
    "bmshj2018-factorized": range(1, 9),
    "bmshj2018-hyperprior": range(1, 9),
    "mbt2018-mean": range(1, 9),
    "mbt2018": range(1, 9),
    "cheng2020-anchor": range(1, 7),
    "cheng2020-attn": range(1, 7),
}
METRICS = ("mse", "ms-ssim")
#: eval_model pads to a multiple of 2**6 (six stride-2 stages) whatever the model
MIN_DIV = 64
HEADER_VERSION = 1
#: keys under which training scripts store the weights (CompressAI's train.py: "state_dict")
_STATE_DICT_KEYS = ("state_dict", "model", "network", "model_state_dict")


# --- container -----------------------------------------------------------------


@dataclass(frozen=True)
class Header:
    """What a decoder must know besides the entropy-coded strings.

    ``lengths[i]`` are the byte lengths of the strings of list ``i`` (one
    string per image; we code one image at a time).
    """

    quality: int
    height: int
    width: int
    shape: tuple[int, ...]
    lengths: tuple[tuple[int, ...], ...]

    def to_bytes(self) -> bytes:
        out = bytearray([HEADER_VERSION])
        for v in (self.quality, self.height, self.width, len(self.shape), *self.shape, len(self.lengths)):
            put_varint(out, v)
        for lens in self.lengths:
            put_varint(out, len(lens))
            for n in lens:
                put_varint(out, n)
        return bytes(out)

    @classmethod
    def from_bytes(cls, data: bytes) -> tuple[Header, int]:
        """The header at the start of ``data`` and the number of bytes it took."""
        if not data:
            raise ValueError("empty header")
        if data[0] != HEADER_VERSION:
            raise ValueError(f"header version {data[0]}, this decoder reads version {HEADER_VERSION}")
        pos = 1
        vals = []
        for _ in range(4):
            v, pos = get_varint(data, pos)
            vals.append(v)
        quality, height, width, ndim = vals
        shape = []
        for _ in range(ndim):
            v, pos = get_varint(data, pos)
            shape.append(v)
        n_lists, pos = get_varint(data, pos)
        lengths = []
        for _ in range(n_lists):
            count, pos = get_varint(data, pos)
            lens = []
            for _ in range(count):
                v, pos = get_varint(data, pos)
                lens.append(v)
            lengths.append(tuple(lens))
        return cls(quality, height, width, tuple(shape), tuple(lengths)), pos


def stream_names(n_lists: int) -> list[str]:
    """Names of the payload streams, in the order of ``compress``'s ``strings``."""
    if n_lists == 1:
        return ["y"]
    if n_lists == 2:
        return ["y", "z"]
    return [f"s{i}" for i in range(n_lists)]


def payload_streams(bitstream: Bitstream) -> list[str]:
    """The entropy-coded streams (what eval_model's bpp counts): all but the header."""
    return [name for name in bitstream.streams if name != "header"]


def pack(bitstream: Bitstream) -> bytes:
    """One file: the header, then the payload streams in header order."""
    header, _ = Header.from_bytes(bitstream.streams["header"])
    names = stream_names(len(header.lengths))
    return bitstream.streams["header"] + b"".join(bitstream.streams[n] for n in names)


def unpack(data: bytes) -> Bitstream:
    """Inverse of :func:`pack`: the header says where each stream ends."""
    header, pos = Header.from_bytes(data)
    streams = {"header": data[:pos]}
    for name, lens in zip(stream_names(len(header.lengths)), header.lengths, strict=True):
        end = pos + sum(lens)
        if end > len(data):
            raise ValueError(f"file too short: stream {name!r} needs {end} bytes, the file has {len(data)}")
        streams[name] = data[pos:end]
        pos = end
    if pos != len(data):
        raise ValueError(f"{len(data) - pos} bytes after the last stream")
    return Bitstream(streams, height=header.height, width=header.width)


# --- helpers that import torch / compressai lazily ----------------------------


def import_compressai() -> Any:
    """Import compressai (and torch), or say why this machine cannot."""
    try:
        with warnings.catch_warnings():  # torch 2.14 deprecates the jit.script compressai uses at import
            warnings.filterwarnings("ignore", message=r".*torch\.jit\.script.*", category=FutureWarning)
            import compressai
            import compressai.zoo  # noqa: F401
    except Exception as exc:  # ImportError, or a binary extension that does not load
        raise MethodUnavailable(
            f"compressai cannot be imported ({type(exc).__name__}: {exc}); install hmc-bench[learned]"
        ) from exc
    return compressai


@contextlib.contextmanager
def default_entropy_coder(name: str) -> Iterator[None]:
    """Entropy models take the default coder when built: set it while building."""
    compressai = import_compressai()
    available = compressai.available_entropy_coders()
    if name not in available:
        raise MethodUnavailable(f"entropy coder {name!r} is not available in compressai (it has {available})")
    previous = compressai.get_entropy_coder()
    compressai.set_entropy_coder(name)
    try:
        yield
    finally:
        compressai.set_entropy_coder(previous)


def _needs_update(net: torch.nn.Module) -> bool:
    """Whether the quantized CDF tables are missing (a checkpoint saved before ``update()``)."""
    from compressai.entropy_models import EntropyModel, GaussianConditional

    for module in net.modules():
        if isinstance(module, EntropyModel) and module._quantized_cdf.numel() == 0:
            return True
        if isinstance(module, GaussianConditional) and module.scale_table.numel() == 0:
            return True
    return False


def one_pass_scale_indexes(net: torch.nn.Module) -> torch.nn.Module:
    """Give each Gaussian conditional of ``net`` a ``build_indexes`` that is one ``torch.bucketize``.

    CompressAI's loops over its 64-entry scale table, one pass over the whole latent per entry: seconds per
    CPU image, a quarter of a hyperprior decode. The indexes are the same integers (an index counts the table
    entries below the bounded scale), so the bytes are too (``tests/methods/test_compressai_codecs.py``).
    """
    import torch
    from compressai.entropy_models import GaussianConditional

    for module in net.modules():
        if isinstance(module, GaussianConditional):

            def build_indexes(scales: torch.Tensor, gc: GaussianConditional = module) -> torch.Tensor:
                return torch.bucketize(gc.lower_bound_scale(scales), gc.scale_table[:-1], out_int32=True)

            module.build_indexes = build_indexes
    return net


def ready_for_coding(
    net: torch.nn.Module, state: Mapping[str, Any], entropy_coder: str, device: Any, mismatch: str
) -> torch.nn.Module:
    """Load a trained ``state`` into ``net``, build CDF tables it lacks, and put it in eval mode on ``device``.

    ``mismatch`` starts the error raised when the state dict does not fit the network.
    """
    import torch

    try:
        net.load_state_dict(state)
    except RuntimeError as exc:
        raise MethodUnavailable(f"{mismatch}: {exc}") from exc
    with default_entropy_coder(entropy_coder), torch.no_grad():
        if _needs_update(net):
            net.update(force=True)
    return one_pass_scale_indexes(net.eval().to(device))


def state_dict_of(obj: Any) -> Mapping[str, Any]:
    """A raw state_dict, or the one a training checkpoint keeps under a known key."""
    if not isinstance(obj, Mapping):
        raise ValueError(f"expected a state_dict or a dict holding one, found {type(obj).__name__}")
    for key in _STATE_DICT_KEYS:
        if isinstance(obj.get(key), Mapping):
            return obj[key]
    return obj


def to_tensor(image: np.ndarray) -> torch.Tensor:
    """``1 x 3 x H x W`` float32 in [0, 1], bit for bit what ``ToTensor`` gives eval_model."""
    import torch

    # a read-only array (a cached sample) is copied: torch warns on tensors over memory it may not write
    x = torch.from_numpy(np.require(image, requirements=("C", "W"))).permute(2, 0, 1).contiguous()
    return x.to(dtype=torch.float32).div(255).unsqueeze(0)


def to_uint8(x_hat: torch.Tensor) -> np.ndarray:
    """``H x W x 3`` uint8, rounded as eval_model's ``compute_metrics`` rounds."""
    import torch

    rec = (x_hat[0] * 255).clamp(0, 255).round().to(torch.uint8)
    return rec.permute(1, 2, 0).contiguous().cpu().numpy()


# --- the method -----------------------------------------------------------------


class CompressAICodec(Method):
    """A CompressAI zoo architecture; rate = quality (1-8, 1-6 for cheng2020).

    ``checkpoints``: None to use CompressAI's zoo weights (torch hub cache,
    downloaded when online); a mapping quality -> checkpoint file; or a
    directory holding one file per quality, named by ``checkpoint_pattern``
    (``str.format`` fields ``arch``, ``metric``, ``quality``; shell wildcards
    allowed; default: the zoo's own file name, so a directory of files
    downloaded from CompressAI's bucket works as it is).
    """

    family = Family.SBAR
    uses_torch = True
    #: the rate is the size of real entropy-coded bytes, header included
    bpp_source: ClassVar[str] = "bitstream"
    min_div: ClassVar[int] = MIN_DIV
    #: the architectures this class codes with, their qualities, and the metrics weights exist for
    qualities: ClassVar[Mapping[str, range]] = QUALITIES
    metrics: ClassVar[tuple[str, ...]] = METRICS

    def __init__(
        self,
        name: str,
        rates: Sequence[int],
        arch: str,
        metric: str = "mse",
        checkpoints: Mapping[Any, str | os.PathLike] | str | os.PathLike | None = None,
        checkpoint_pattern: str | None = None,
        entropy_coder: str = "ans",
        device: str = "cpu",
        description: str = "",
        **options: Any,
    ):
        if arch not in self.qualities:
            raise ValueError(
                f"method {name!r}: unknown CompressAI architecture {arch!r}; known: {list(self.qualities)}"
            )
        if metric not in self.metrics:
            raise ValueError(f"method {name!r}: metric must be one of {self.metrics}, not {metric!r}")
        super().__init__(name, rates, description or f"CompressAI {arch} ({metric})", **options)
        bad = [r for r in self.rates if not isinstance(r, int) or r not in self.qualities[arch]]
        if bad:
            q = self.qualities[arch]
            raise ValueError(f"method {name!r}: {arch} has qualities {q.start}..{q.stop - 1}; got {bad}")
        self.arch = arch
        self.metric = metric
        self.entropy_coder = entropy_coder
        #: torch device of the networks ("cpu", "cuda", "cuda:1"); the runner sets it from `device`
        self.device = device
        self.checkpoint_pattern = checkpoint_pattern
        self.checkpoints: dict[int, Path] | Path | None
        if checkpoints is None:
            self.checkpoints = None
        elif isinstance(checkpoints, Mapping):
            self.checkpoints = {int(k): Path(os.path.expanduser(str(v))) for k, v in checkpoints.items()}
        elif isinstance(checkpoints, (str, os.PathLike)):
            self.checkpoints = Path(os.path.expanduser(str(checkpoints)))
        else:
            raise ValueError(
                f"method {name!r}: checkpoints must be null, a mapping quality -> file or a directory, "
                f"not {type(checkpoints).__name__}"
            )
        self._models: dict[int, torch.nn.Module] = {}
        #: qualities whose network was installed from memory (:meth:`install`), not read from a file
        self._installed: set[int] = set()

    # --- where the weights are -------------------------------------------------
    def _label(self, quality: int) -> str:
        return f"{self.arch} ({self.metric}) quality {quality}"

    def _quality(self, rate: Any) -> int:
        try:
            q = int(rate)
        except (TypeError, ValueError):
            q = None
        if q is None or q != rate or q not in self.qualities[self.arch]:
            q_range = self.qualities[self.arch]
            raise CodecError(f"{self.arch}: no quality {rate!r} (qualities {q_range.start}..{q_range.stop - 1})")
        return q

    def zoo_url(self, quality: int) -> str:
        """Where CompressAI's zoo downloads this quality's weights from."""
        from compressai.zoo.image import model_urls

        return model_urls[self.arch][self.metric][quality]

    def zoo_cache_file(self, quality: int) -> Path:
        """Where ``torch.hub`` keeps (or would keep) the zoo's file."""
        import torch.hub

        return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(urlparse(self.zoo_url(quality)).path)

    def checkpoint_file(self, quality: int) -> Path | None:
        """The local checkpoint configured for ``quality``; None when weights come from the zoo."""
        if self.checkpoints is None:
            return None
        if isinstance(self.checkpoints, dict):
            if quality not in self.checkpoints:
                raise MethodUnavailable(
                    f"{self._label(quality)}: no checkpoint configured for this quality "
                    f"(checkpoints has qualities {sorted(self.checkpoints)})"
                )
            return self.checkpoints[quality]
        if self.checkpoint_pattern:
            fname = self.checkpoint_pattern.format(arch=self.arch, metric=self.metric, quality=quality)
        else:
            fname = os.path.basename(urlparse(self.zoo_url(quality)).path)
        path = self.checkpoints / fname
        if any(c in fname for c in "*?["):
            matches = sorted(self.checkpoints.glob(fname))
            if len(matches) > 1:
                raise MethodUnavailable(
                    f"{self._label(quality)}: checkpoint pattern {path} matches {len(matches)} files: "
                    f"{[m.name for m in matches]}"
                )
            if matches:
                return matches[0]
        return path

    def weights_file(self, quality: int) -> Path:
        """The file this quality's weights are read from (a local checkpoint or the hub cache)."""
        import_compressai()
        return self.checkpoint_file(quality) or self.zoo_cache_file(quality)

    def fetch_weights(self) -> list[Path]:
        """Download the zoo weights of every configured quality into the torch hub cache.

        ``torch.hub`` checks each file against the hash prefix in its name. With a ``release_url`` option
        (the project's own trained weights), the released files go into ``checkpoints``, checked against
        the SHA-256 in their sidecars.
        """
        import torch.hub

        if self.checkpoints is not None:  # local checkpoints (the project's own): verified against their sidecars
            from bench.training.weights import fetch_release

            files = [f for q in self.rates if (f := self.checkpoint_file(q)) is not None]
            return fetch_release(files, self.options.get("release_url"))
        files = []
        for q in self.rates:
            target = self.zoo_cache_file(q)
            if not target.is_file():
                target.parent.mkdir(parents=True, exist_ok=True)
                torch.hub.download_url_to_file(
                    self.zoo_url(q), str(target), hash_prefix=target.name.split("-")[-1].split(".")[0]
                )
            files.append(target)
        return files

    def unavailable_reason(self) -> str | None:
        """None when compressai imports and every rate's weights are on disk (no network is tried)."""
        try:
            missing = [(q, f) for q in self.rates if not (f := self.weights_file(q)).is_file()]
        except MethodUnavailable as exc:
            return str(exc)
        if not missing:
            return None
        qs = [q for q, _ in missing]
        q, f = missing[0]
        if self.checkpoints is None:
            return (
                f"{self.arch} ({self.metric}): CompressAI's pretrained weights for qualities {qs} are not in the "
                f"torch hub cache {f.parent} (e.g. {f.name}); get them with `python -m bench fetch {self.name}` "
                f"(from {self.zoo_url(q)}, ...), or set `checkpoints` to local files"
            )
        return f"{self.arch} ({self.metric}): checkpoint file(s) not found for qualities {qs}, e.g. {f}"

    def weight_files(self, rate: Any) -> dict[str, Path | str]:
        from bench.io.digests import module_digest
        from bench.running.keys import GENERATED

        q = self._quality(rate)
        if q in self._installed:  # digested now: a network in memory may have changed since it was installed
            return {"codec": GENERATED + module_digest(self._models[q])}
        return {"codec": self.weights_file(q)}

    def weights_origin(self, role: str) -> str:
        return "published" if self.checkpoints is None else "unknown"  # the zoo's files are CompressAI's release

    # --- loading ------------------------------------------------------------------
    def install(self, quality: int, net: torch.nn.Module) -> None:
        """Code ``quality`` with ``net`` (a network in memory: tests, training loops) instead of a weights file."""
        self._models[quality] = one_pass_scale_indexes(net.eval().to(self.device))
        self._installed.add(quality)

    def network(self, quality: int) -> torch.nn.Module:
        """The model for ``quality``, loaded on first use and then cached."""
        q = self._quality(quality)
        if q not in self._models:
            self._models[q] = self._load(q)
        return self._models[q]

    def _load(self, quality: int) -> torch.nn.Module:
        import torch

        import_compressai()
        # no_grad, not inference_mode: the CDF buffers made here must stay ordinary tensors
        with default_entropy_coder(self.entropy_coder), torch.no_grad():
            path = self.checkpoint_file(quality)
            net = self._load_zoo(quality) if path is None else self._load_checkpoint(quality, path)
            if _needs_update(net):
                net.update(force=True)
        return one_pass_scale_indexes(net.eval().to(self.device))

    def _load_zoo(self, quality: int) -> torch.nn.Module:
        import torch.hub
        from compressai.zoo import image_models

        url = self.zoo_url(quality)
        cached = self.zoo_cache_file(quality)
        try:
            return image_models[self.arch](quality=quality, metric=self.metric, pretrained=True, progress=False)
        except urllib.error.URLError as exc:
            raise MethodUnavailable(
                f"{self._label(quality)}: CompressAI's pretrained weights are not in the torch hub cache "
                f"({torch.hub.get_dir()}, set by TORCH_HOME) and downloading them failed: {url}: "
                f"{getattr(exc, 'reason', exc)}. Put that file at {cached} (download it where there is "
                "internet), or give local checkpoints in the method config: checkpoints: {quality: path} "
                "or checkpoints: <directory> (files named as the zoo's, or set checkpoint_pattern)"
            ) from exc
        except Exception as exc:  # a corrupt or truncated cached file, a network error of another kind
            where = f"the cached file {cached}" if cached.is_file() else f"{url} (cache: {cached})"
            raise MethodUnavailable(
                f"{self._label(quality)}: cannot load CompressAI's pretrained weights from {where}: "
                f"{type(exc).__name__}: {exc}"
            ) from exc

    def _architecture(self) -> type:
        """The CompressAI model class whose ``from_state_dict`` rebuilds a checkpoint of ``self.arch``."""
        from compressai.zoo.image import model_architectures

        return model_architectures[self.arch]

    def _load_checkpoint(self, quality: int, path: Path) -> torch.nn.Module:
        import torch
        from compressai.zoo import load_state_dict as rename_legacy_keys

        from bench.training.weights import ChecksumMismatch as ChecksumError
        from bench.training.weights import to_float32
        from bench.training.weights import verified_sidecar as verify_checksum

        if not path.is_file():
            raise MethodUnavailable(f"{self._label(quality)}: checkpoint file not found: {path}")
        try:
            verify_checksum(path)  # when a sidecar (name.json with its sha256) is beside the file
        except ChecksumError as exc:
            raise MethodUnavailable(f"{self._label(quality)}: {exc}") from exc
        try:
            obj = torch.load(path, map_location="cpu", weights_only=True)
            # fp16 exports (bench train-codec export) run in float32; integer CDF tables stay as they are
            state = to_float32(rename_legacy_keys(dict(state_dict_of(obj))))
        except Exception as exc:  # unreadable, not a torch file, pickled code (weights_only refuses it)
            raise MethodUnavailable(
                f"{self._label(quality)}: cannot read checkpoint {path}: {type(exc).__name__}: {exc}"
            ) from exc
        try:
            return self._architecture().from_state_dict(state)
        except (KeyError, RuntimeError, ValueError, IndexError) as exc:
            raise MethodUnavailable(
                f"{self._label(quality)}: checkpoint {path} does not hold {self.arch} weights: "
                f"{type(exc).__name__}: {exc}"
            ) from exc

    # --- coding -------------------------------------------------------------------
    def encode(self, image: np.ndarray, rate: Any) -> Bitstream:
        import torch
        import torch.nn.functional as F
        from compressai.ops import compute_padding

        q = self._quality(rate)
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise CodecError(f"{self._label(q)}: expected an H x W x 3 uint8 image, got {image.shape} {image.dtype}")
        net = self.network(q)
        height, width = image.shape[:2]
        pad, _ = compute_padding(height, width, min_div=self.min_div)
        try:
            with torch.inference_mode():
                x = F.pad(to_tensor(image).to(self.device), pad, mode="constant", value=0)
                out = net.compress(x)
        except Exception as exc:
            raise CodecError(f"{self._label(q)}: compress failed on a {height}x{width} image: {exc}") from exc
        strings = [[bytes(s) for s in lst] for lst in out["strings"]]
        header = Header(
            quality=q,
            height=height,
            width=width,
            shape=tuple(int(d) for d in out["shape"]),
            lengths=tuple(tuple(len(s) for s in lst) for lst in strings),
        )
        streams = {"header": header.to_bytes()}
        for name, lst in zip(stream_names(len(strings)), strings, strict=True):
            streams[name] = b"".join(lst)
        payload = sum(len(streams[n]) for n in streams if n != "header")
        return Bitstream(
            streams,
            height=height,
            width=width,
            info={"quality": q, "header_bytes": len(streams["header"]), "payload_bytes": payload},
        )

    def parse(self, bitstream: Bitstream) -> tuple[Header, list[list[bytes]]]:
        """The header and the strings in ``model.decompress``'s layout; CodecError if malformed."""
        if "header" not in bitstream.streams:
            raise CodecError(f"{self.arch}: bitstream has no 'header' stream (it has {list(bitstream.streams)})")
        try:
            header, used = Header.from_bytes(bitstream.streams["header"])
        except ValueError as exc:
            raise CodecError(f"{self.arch}: malformed header: {exc}") from exc
        if used != len(bitstream.streams["header"]):
            raise CodecError(f"{self.arch}: {len(bitstream.streams['header']) - used} stray bytes after the header")
        names = stream_names(len(header.lengths))
        if set(bitstream.streams) != {"header", *names}:
            raise CodecError(
                f"{self._label(header.quality)}: expected streams {['header', *names]}, got {list(bitstream.streams)}"
            )
        if (header.height, header.width) != (bitstream.height, bitstream.width):
            raise CodecError(
                f"{self._label(header.quality)}: header says {header.height}x{header.width}, "
                f"bitstream says {bitstream.height}x{bitstream.width}"
            )
        strings = []
        for name, lens in zip(names, header.lengths, strict=True):
            data = bitstream.streams[name]
            if len(data) != sum(lens):
                raise CodecError(
                    f"{self._label(header.quality)}: stream {name!r} has {len(data)} bytes, header says {sum(lens)}"
                )
            parts, pos = [], 0
            for n in lens:
                parts.append(data[pos : pos + n])
                pos += n
            strings.append(parts)
        return header, strings

    def decode(self, bitstream: Bitstream, target: str = HUMAN) -> np.ndarray:
        """The reconstruction; SBAR: every target, human or task, receives it."""
        import torch
        import torch.nn.functional as F
        from compressai.ops import compute_padding

        header, strings = self.parse(bitstream)
        q = self._quality(header.quality)
        net = self.network(q)
        _, unpad = compute_padding(header.height, header.width, min_div=self.min_div)
        try:
            with torch.inference_mode():
                out = net.decompress(strings, torch.Size(header.shape))
                x_hat = F.pad(out["x_hat"], unpad)
                image = to_uint8(x_hat)
        except Exception as exc:
            raise CodecError(f"{self._label(q)}: decompress failed: {exc}") from exc
        if image.shape != (header.height, header.width, 3):
            raise CodecError(f"{self._label(q)}: decoded {image.shape[:2]}, expected {(header.height, header.width)}")
        return image

    def versions(self) -> dict[str, str]:
        return installed_versions("compressai", "torch")
