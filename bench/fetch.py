"""``python -m bench fetch``: datasets from their official sources, verified.

Kodak is checked by the SHA-256 of each image's decoded RGB pixels rather
than of the file, since mirrors re-encode the PNGs losslessly: the pixels are
what the benchmark measures. Offline, the first failed request ends the fetch
with one message saying what could not be reached and what to do instead.
"""

from __future__ import annotations

import hashlib
import os
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

import numpy as np

from bench.datasets.folder import KODAK_FILES, KODAK_URL
from bench.io.images import ImageError, read_rgb8


class FetchError(RuntimeError):
    """A download that cannot be done; the message says why and what to do."""


KODAK_PIXEL_SHA256 = {
    "kodim01.png": "a00210743353594464ac67e680a41710f484444ca5f9dfddeb570de25c428273",
    "kodim02.png": "ae5a495df4ec40e0941265440ccf98973915b4190ab803e37a23ca93dd43a07e",
    "kodim03.png": "234e61f585503f2a44400f5561131e8a512ef2c15328cd83d5cdbf10e2616cf2",
    "kodim04.png": "e88e788fca00e6c723bb66ff45edb8cb56091ee284dcb73e3909834f2c96eeb6",
    "kodim05.png": "ed3d1ee770909d3b27903b52ce19ee59a9bf24621a7bf1fb57b90677da880cb6",
    "kodim06.png": "7f45158999fa297d1cfbd292b3e2f3f5b27770701c3473155c211c3f512cc97f",
    "kodim07.png": "4e3664bf6fe865b49f15f7b554efa7dbecaf73ae0e8699f2e307bf07849f1264",
    "kodim08.png": "889c3740e4ed54ca53d11ae735a44d15fa24fe312b3bd1609a80618a4092c208",
    "kodim09.png": "f8453140e63a42301a6dbebb849a3cc40d34e4e59580eb1f372f7f5460df0dbe",
    "kodim10.png": "fabe11b5c4f028394e093a5b5907e5fabc8072da0d5334fb3a38547a7e1be842",
    "kodim11.png": "ab4dd9bf8431e717d33892b3ba03c63bfea3c7fa72c2610010de7df3c194c075",
    "kodim12.png": "f412db2168e599949aac26bd3264f111b23a684f30a21cfd320e9e95bc69bbae",
    "kodim13.png": "875703d56fb9396f478b5d7d3b18e2b77c17147a685c6dc2567e1c574aaf01e3",
    "kodim14.png": "2bd5029ee75ac1697542e5b05624e8afe186e3250abd7513d6a806b52084c2f0",
    "kodim15.png": "b5353e7511277009922ecbdebfc6418fec53aa1b2a08d44fc957a7540825697b",
    "kodim16.png": "ed21745fd32fce95cc2c6af7fc52b1b15e590c7a14ab18ab34bd65ecaf955ac7",
    "kodim17.png": "566bc866664e9b06dc86e2654051b454844efe17322dbf7e24156d8243f1943e",
    "kodim18.png": "3475af71066f3ca8206eb12cfc989ebe9c6e44820a96604e88ae018606e1f7bd",
    "kodim19.png": "7956408ef24222d37ac53f579bd24d5b2c3557b16c657e8b71c1b6ae9f18de1b",
    "kodim20.png": "666ce8f2db5566a123bb081e70618f6f4c4253df960f3b41bb9dcc3dd134f3cf",
    "kodim21.png": "2d6902daf7c4486b7c8c04d834091841a2b38c8f0c81cd7a963a6510b34a2a6a",
    "kodim22.png": "f430842120c108b67725ada96b8b7b2a914f6a0915eacd5595064c6c1a5d70a0",
    "kodim23.png": "81992a83592267e69125666f3e3e04c1819529b4c4c1e55fde0a6a741bac4219",
    "kodim24.png": "e3e3ccc3e795b82a3da66934409dfe98ce0f5aadc6d7767543c506453599bb98",
}


def pixel_sha256(path: Path) -> str:
    return hashlib.sha256(np.ascontiguousarray(read_rgb8(path)).tobytes()).hexdigest()


def download(url: str, target: Path, timeout: float = 30.0) -> None:
    """Download ``url`` to ``target`` atomically; offline, one clear error naming the URL and the folder."""
    from bench.io.files import atomic_target

    try:
        with atomic_target(target) as tmp, open(tmp, "wb") as out, urllib.request.urlopen(url, timeout=timeout) as resp:
            while chunk := resp.read(1 << 16):
                out.write(chunk)
    except (urllib.error.URLError, TimeoutError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise FetchError(
            f"cannot download {url} ({reason}). This machine may be offline: download the files "
            f"elsewhere and copy them into {target.parent}"
        ) from exc


def fetch_kodak(root: Path) -> Path:
    """Download kodim01..24.png from r0k.us into ``root``; verify every image."""
    from tqdm import tqdm

    for name in tqdm(KODAK_FILES, desc="kodak", unit="image"):
        target = root / name
        index = int(name[5:7])
        if not target.exists():
            download(KODAK_URL.format(index=index), target)
        try:
            digest = pixel_sha256(target)
        except ImageError as exc:
            target.unlink(missing_ok=True)
            raise FetchError(
                f"{target}: downloaded file is not a valid image ({exc}); removed, run fetch again"
            ) from exc
        if digest != KODAK_PIXEL_SHA256[name]:
            raise FetchError(
                f"{target}: pixels differ from the Kodak suite (sha256 {digest[:16]}..., expected "
                f"{KODAK_PIXEL_SHA256[name][:16]}...); delete it and fetch again"
            )
    return root


def _fetch_cityscapes(root: Path) -> Path:
    from bench.datasets.cityscapes import fetch_cityscapes

    return fetch_cityscapes(root)


def _fetch_coco(root: Path) -> Path:
    from bench.datasets.coco import fetch_coco

    return fetch_coco(root)


def _fetch_ucf101(root: Path) -> Path:
    from bench.datasets.ucf101 import fetch_ucf101

    return fetch_ucf101(root)


FETCHERS: dict[str, Callable[[Path], Path]] = {
    "kodak": fetch_kodak,
    "coco": _fetch_coco,
    "cityscapes": _fetch_cityscapes,
    "ucf101": _fetch_ucf101,
}


def default_root(dataset: str) -> Path:
    return Path(os.environ.get("HMC_BENCH_DATA", "data")) / dataset


def fetch_method_weights(method_name: str) -> list[Path]:
    """Download a learned method's weights (all its configured rates) into its cache, or verify the shipped ones
    against their committed sidecars; returns every file."""
    from hydra import compose, initialize_config_module
    from hydra.utils import instantiate

    with initialize_config_module(config_module="bench.conf", version_base="1.3"):
        method = instantiate(compose("config", overrides=[f"method={method_name}"]).method)
    if not hasattr(method, "fetch_weights"):
        raise FetchError(f"method {method_name!r} has no published weights to fetch")
    try:
        files = method.fetch_weights()
    except (urllib.error.URLError, TimeoutError, OSError) as exc:
        raise FetchError(
            f"cannot download the weights of {method_name} ({getattr(exc, 'reason', exc)}). This machine may be "
            "offline: copy the files into the torch hub cache ($TORCH_HOME/hub/checkpoints) or set "
            "method.checkpoints to local files"
        ) from exc
    return files


def fetchable() -> list[str]:
    """Datasets and learned methods ``fetch`` knows."""
    from bench.running.catalog import config_names

    return sorted(FETCHERS) + [m for m in config_names("method") if m.startswith(LEARNED_PREFIXES) or m in TRAINED_HERE]


LEARNED_PREFIXES = ("bmshj2018", "mbt2018", "cheng2020", "ssf2020", "eac", "icmh")
#: human-machine methods whose trained weights ship in checkpoints/ (each verified against its sidecar)
TRAINED_HERE = ("sicmh", "latent-scalable", "compressed-domain", "feature-stream")


def fetch(name: str, root: str | os.PathLike | None = None) -> Path | list[Path]:
    """A dataset's folder, or the weight files of a learned method."""
    if name in FETCHERS:
        return FETCHERS[name](Path(root) if root else default_root(name))
    if name in fetchable():
        return fetch_method_weights(name)
    raise FetchError(f"nothing to fetch called {name!r}; known: {fetchable()}")
