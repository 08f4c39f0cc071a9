"""``python -m bench train-codec``: train a CompressAI codec for one rate point (resumable), or ``export`` a run."""

from __future__ import annotations

import json
import logging
import os
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path

from bench.training.codec import TrainError, load_config, train
from bench.training.codec_export import export_run

HELP = """usage: python -m bench train-codec [key=value ...]
       python -m bench train-codec export run_dir=DIR [checkpoint=last|best] [out_dir=DIR] [name=STEM]

Train a CompressAI codec for one rate point (config: bench/conf/train_codec.yaml), e.g.
  python -m bench train-codec model=bmshj2018-hyperprior quality=1 data=[data/train_images] \\
      val_data=[data/val_images] patch_size=256 batch_size=16
Running the same command again resumes from <out_dir>/last.pt.
`export` writes fp16 weights with entropy tables and a JSON sidecar (sha256, training figures).
"""


def _setup_logging(out_dir: Path | None) -> None:
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stdout)]
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
        handlers.append(logging.FileHandler(out_dir / "train.log"))
    fmt = logging.Formatter("%(asctime)s %(levelname)s %(message)s", "%Y-%m-%d %H:%M:%S")
    logger = logging.getLogger("bench.train")
    logger.handlers.clear()
    for h in handlers:
        h.setFormatter(fmt)
        logger.addHandler(h)
    logger.setLevel(logging.INFO)
    logger.propagate = False


def _parse_kv(argv: Sequence[str]) -> dict[str, str]:
    out = {}
    for arg in argv:
        key, sep, value = arg.partition("=")
        if not sep:
            raise TrainError(f"expected key=value, got {arg!r}")
        out[key] = value
    return out


def main(argv: Sequence[str]) -> int:
    argv = list(argv)
    if argv and argv[0] in ("-h", "--help"):
        print(HELP)
        return 0
    warnings.filterwarnings("ignore", message=r".*torch\.jit\.script.*", category=FutureWarning)
    try:
        if argv and argv[0] == "export":
            opts = _parse_kv(argv[1:])
            unknown = set(opts) - {"run_dir", "checkpoint", "out_dir", "name"}
            if unknown or "run_dir" not in opts:
                raise TrainError(f"export needs run_dir=DIR (and optionally checkpoint, out_dir, name); got {argv[1:]}")
            pth, sidecar = export_run(
                opts["run_dir"], opts.get("checkpoint", "last"), opts.get("out_dir", "weights"), opts.get("name")
            )
            print(f"wrote {pth} and {sidecar}")
            return 0
        cfg = load_config(argv)
        _setup_logging(Path(os.path.expanduser(cfg["out_dir"])))
        record = train(cfg)
        print(json.dumps(record))
        return 0
    except TrainError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
