"""``python -m bench leaderboard``: rankings equal ``bench.analysis.bdrate``, the Pareto view, the page in a browser."""

from __future__ import annotations

import html
import json
import math
import os
import re
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import results_builder as RB

from bench.analysis import comparison, rankings, report, results
from bench.analysis import leaderboard as L
from bench.analysis.bdrate import bd_rate
from bench.analysis.rdcurves import RDCurve

REPO = Path(__file__).resolve().parents[2]
BPP = [0.25, 0.5, 1.0, 2.0]
PSNR = [28.0, 31.0, 34.0, 37.0]
MAP = [0.30, 0.40, 0.48, 0.52]
CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "chrome")


def bench(*args: str, cwd: Path, timeout: int = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "bench", *args], cwd=cwd, capture_output=True, text=True, timeout=timeout
    )


def ssim_at(bpp: float) -> float:
    """An MS-SSIM curve linear in dB over log-rate, so a rate scaling is an exact BD-rate."""
    return 1 - 10 ** (-(10 + 3 * math.log2(bpp / 0.25)) / 10)


def psnr_at(bpp: float) -> float:
    return 28 + 3 * math.log2(bpp / 0.25)  # PSNR above: 28, 31, 34, 37 dB


SSIM = [ssim_at(b) for b in BPP]


def scaled(factor: float) -> list[float]:
    return [b * factor for b in BPP]


def doc(name: str, family: str, bpp: list[float], machine_bpp: list[float] | None = None, **res) -> dict:
    """Our results format; with ``machine_bpp`` a detection task as the runner writes it (``bpp@detection``...)."""
    results = {"bpp": bpp, "rate": [1, 2, 3, 4], **{k.replace("_", "-"): v for k, v in res.items()}}
    if machine_bpp is not None:
        results["bpp@detection"] = machine_bpp
        results["detection/mAP"] = results.pop("mAP")
        results["detection/mAP50"] = [min(v + 0.2, 1.0) for v in results["detection/mAP"]]
        results["detection/n"] = [5, 5, 5, 5]
    meta = {
        "family": family,
        "bpp_source": "bitstream",
        "config_hash": f"cfg{name}",
        "codec_versions": {"codec": "1.0"},
        "provenance": {"git": {"commit": "feedc0ffee" + "0" * 30, "dirty": True}, "versions": {"hmc-bench": "0.1.0"}},
    }
    if machine_bpp is not None:
        meta["tasks"] = {"detection": {"metrics": ["mAP", "mAP50"], "headline": "detection/mAP"}}
    return {"name": name, "description": f"{name} method", "results": results, "meta": meta}


def make_results(root: Path) -> Path:
    """coco: human + machine curves with known BD-rates; toy: human only."""
    docs = {
        "coco": [
            doc("jpeg", "SBAR", BPP, BPP, psnr_rgb=PSNR, mAP=MAP),
            doc("alpha", "MBHD", scaled(0.8), scaled(1.05), psnr_rgb=PSNR, mAP=MAP),  # human -20 %, machine +5 %
            doc("beta", "MBID", scaled(0.9), scaled(0.7), psnr_rgb=PSNR, mAP=MAP),  # -10 %, -30 %
            doc("gamma", "SBMD", scaled(1.1), scaled(1.2), psnr_rgb=PSNR, mAP=MAP),  # +10 %, +20 %
            doc("delta", "SBAR", BPP, scaled(1.3), psnr_rgb=[28.0, 31.0, 30.0, 37.0], mAP=MAP),  # PSNR not monotone
        ],
        "toy": [
            doc("jpeg", "SBAR", BPP, psnr_rgb=PSNR, ms_ssim_rgb=SSIM),
            doc("fast", "SBAR", scaled(0.8), psnr_rgb=PSNR, ms_ssim_rgb=SSIM),  # -20 %, -20 %
            # PSNR as at 1/0.78 of the rate, MS-SSIM as at 1/0.9: -22 %, -10 %
            doc(
                "odd",
                "SBAR",
                BPP,
                psnr_rgb=[psnr_at(b / 0.78) for b in BPP],
                ms_ssim_rgb=[ssim_at(b / 0.9) for b in BPP],
            ),
            doc("worse", "SBAR", scaled(1.1), psnr_rgb=PSNR, ms_ssim_rgb=SSIM),
        ],
    }
    for dataset, items in docs.items():
        (root / dataset).mkdir(parents=True, exist_ok=True)
        for d in items:
            (root / dataset / f"{d['name']}.json").write_text(json.dumps(d))
    return root


@pytest.fixture(scope="module")
def board(tmp_path_factory) -> tuple[Path, Path, subprocess.CompletedProcess]:
    base = tmp_path_factory.mktemp("board")
    root = make_results(base / "res")
    res = bench("leaderboard", "--no-committed", "--results", str(root), "--out", str(base / "lb"), cwd=base)
    assert res.returncode == 0, res.stdout + res.stderr
    return root, base / "lb", res


def test_ranking_is_bd_rate_against_the_anchor(board):
    root, _, res = board
    (coco,) = comparison.analyse(results.load_roots([root], ["coco"]))
    order = [(r.rank, r.entry.name) for r in rankings.ranking(coco, "psnr-rgb")]
    assert order == [(1, "alpha"), (2, "beta"), (3, "jpeg"), (4, "gamma"), (None, "delta")]
    anchor = RDCurve("jpeg", np.array(BPP), np.array(PSNR), "psnr-rgb")
    for r in rankings.ranking(coco, "psnr-rgb"):
        if r.rank and not r.anchor:
            assert r.bd_rate == bd_rate(anchor, r.entry.curves["psnr-rgb"]).value
    machine = {r.entry.name: r.bd_rate for r in rankings.ranking(coco, "detection/mAP")}
    assert machine["beta"] == pytest.approx(-30.0, abs=1e-9) and machine["gamma"] == pytest.approx(20.0, abs=1e-9)
    assert "coco psnr-rgb: 1. alpha (-20.00%), 2. beta (-10.00%), 3. jpeg (+0.00%), 4. gamma (+10.00%)" in res.stdout


def test_joint_views_are_pareto_sets(board):
    root, _, _ = board
    coco, toy = comparison.analyse(results.load_roots([root]))
    assert coco.metrics == ["psnr-rgb", "detection/mAP", "detection/mAP50"]
    assert not [n for n in coco.notes if "quality axes" in n]  # detection/n: no axis
    assert rankings.joint_axes(coco) == [("psnr-rgb", "detection/mAP")]  # human + the task's headline metric
    flags = {p.entry.name: p.pareto for p in rankings.joint_view(coco, "psnr-rgb", "detection/mAP")}
    assert flags == {"alpha": True, "beta": True, "jpeg": False, "gamma": False, "delta": False}
    assert rankings.joint_axes(toy) == [("psnr-rgb", "ms-ssim-rgb")]  # human only: PSNR x MS-SSIM
    flags = {p.entry.name: p.pareto for p in rankings.joint_view(toy, "psnr-rgb", "ms-ssim-rgb")}
    assert flags == {"odd": True, "fast": True, "jpeg": False, "worse": False}
    odd = toy.cell("odd", "ms-ssim-rgb").value
    assert odd == pytest.approx(-10.0, abs=1e-6) and toy.cell("odd", "psnr-rgb").value == pytest.approx(-22.0, abs=1e-6)
    assert rankings.pareto_front([(0, 0), (1, -1), (1, 1), (0, 0)]) == [True, True, False, True]


def test_pages_link_plots_and_show_provenance(board):
    _, out, _ = board
    page = (out / "index.html").read_text()
    assert "http://" not in page and "https://" not in page  # self-contained: nothing from the network
    srcs = re.findall(r'<img src="([^"]+)"', page)
    assert "plots/coco/rd-psnr-rgb.png" in srcs and "plots/coco/joint-psnr-rgb-detection_mAP.png" in srcs
    assert all((out / s).stat().st_size > 5000 for s in srcs)
    assert "feedc0ffee+dirty" in page and "cfgbeta" in page and "codec 1.0, hmc-bench 0.1.0" in page
    md = (out / "leaderboard.md").read_text()
    assert "| 1 | alpha | MBHD | -20.00 |" in md and "| — | delta | SBAR | n/a: not monotone |" in md
    assert "### Joint view: PSNR RGB × detection/mAP" in md and "| beta | MBID | -10.00 | -30.00 | yes |" in md
    assert "[RD curves](plots/toy/rd-psnr-rgb.png)" in md
    assert (out / "leaderboard.csv").read_text().count("\n") > 10


def test_later_results_folder_replaces_a_method(tmp_path, board):
    root, _, _ = board
    mine = tmp_path / "mine"
    (mine / "toy").mkdir(parents=True)
    (mine / "toy" / "worse.json").write_text(json.dumps(doc("worse", "SBAR", scaled(0.5), psnr_rgb=PSNR)))
    by_dataset, notes = L.load_with_overrides([root, mine])
    assert any("worse" in n and "replaces" in n for n in notes)
    (toy,) = comparison.analyse({"toy": by_dataset["toy"]})
    assert toy.cell("worse", "psnr-rgb").value == pytest.approx(-50.0, abs=1e-9)
    assert rankings.committed_results() == REPO / "results"


# ---------------------------------------------------------------------------------------------------------------
# task and video tracks, and the committed results


def task_doc(name: str, bpp: list[float], samples: int = 158) -> dict:
    """A codec on COCO-like data with a ground-truth detection task (headline mAP), as the runner writes it."""
    d = doc(name, "SBAR", bpp, bpp, psnr_rgb=PSNR, mAP=MAP)
    d["meta"]["samples"] = samples
    d["meta"]["tasks"]["detection"]["protocol"] = "ground_truth"
    return d


def clip_doc(name: str, bpp: list[float]) -> dict:
    """A video codec on 4 clips: bpp over frames, kbps, PSNR-YUV 4:2:0 and the frame-fidelity task."""
    results = {
        "bpp": bpp,
        "psnr-rgb": PSNR,
        "psnr-yuv420": [p + 4 for p in PSNR],
        "kbps": [b * 320 * 240 * 25 / 1000 for b in bpp],
        "frames": [16.0] * 4,
        "rate": [43, 33, 28, 23],
        "bpp@frame-fidelity": bpp,
        "frame-fidelity/top1": [0.25, 0.5, 0.75, 1.0],
        "frame-fidelity/top5": [0.5, 0.75, 1.0, 1.0],
        "frame-fidelity/n": [4, 4, 4, 4],
    }
    task = {"protocol": "fidelity", "headline": "frame-fidelity/top1", "metrics": ["top1", "top5"]}
    meta = {"family": "SBAR", "bpp_source": "bitstream", "samples": 4, "tasks": {"frame-fidelity": task}}
    return {"name": name, "description": f"{name} video codec", "results": results, "meta": meta}


def test_task_and_video_tracks_are_ranked_with_protocol_and_sample_count(tmp_path):
    root = tmp_path / "res"
    datasets = {
        "coco": [task_doc("jpeg", BPP), task_doc("webp", scaled(0.75))],
        "clips": [clip_doc("h264", BPP), clip_doc("h265", scaled(0.8)), clip_doc("av1", scaled(1.25))],
    }
    for dataset, docs in datasets.items():
        (root / dataset).mkdir(parents=True)
        for d in docs:
            (root / dataset / f"{d['name']}.json").write_text(json.dumps(d))
    by_dataset, _ = L.load_with_overrides([root])
    board = L.build(by_dataset, tmp_path / "lb", sources=[str(root)])
    clips, coco = board.analyses

    assert clips.anchor.name == "h264" and clips.anchor_note is None  # video anchor, though av1 comes first by name
    assert rankings.track_metrics(clips) == ["psnr-rgb", "psnr-yuv420", "frame-fidelity/top1"]  # top5: not the headline
    assert all(e.media == "video" for e in clips.entries)
    assert not [n for n in clips.notes if "quality axes" in n]  # kbps, frames: no "ignored" note
    for metric in ("psnr-yuv420", "frame-fidelity/top1"):
        ranked = [(r.rank, r.entry.name, round(r.bd_rate, 9)) for r in rankings.ranking(clips, metric)]
        assert ranked == [(1, "h265", -20.0), (2, "h264", 0.0), (3, "av1", 25.0)]
    assert rankings.track_metrics(coco) == ["psnr-rgb", "detection/mAP"]
    assert rankings.other_task_metrics(coco) == ["detection/mAP50"]
    assert [(r.rank, r.entry.name) for r in rankings.ranking(coco, "detection/mAP")] == [(1, "webp"), (2, "jpeg")]

    md = board.markdown.read_text()
    assert "4 clips: a small sample, figures are indicative" in md
    assert "158 images (full evaluation set: 5000): a small sample" in md
    assert "### detection/mAP, ground-truth protocol" in md and "### detection/mAP50" not in md
    assert "### frame-fidelity/top1, fidelity protocol\n" in md  # the heading names the protocol, the caption says more
    assert "task frame-fidelity: fidelity protocol — agreement with the network's output on the uncompressed" in md
    assert "| 1 | h265 | SBAR | -20.00 |" in md
    page = board.html.read_text()
    assert 'id="t-clips-frame-fidelity-top1"' in page and 'id="t-coco-detection-mAP"' in page
    assert "task frame-fidelity: fidelity protocol" in page and "task detection: ground-truth protocol" in page
    assert not (tmp_path / "lb" / "plots" / "coco" / "rd-detection_mAP50.png").exists()  # plots of tracks only


def test_committed_results_build_a_leaderboard(tmp_path):
    by_dataset, _ = L.load_with_overrides([rankings.committed_results()])
    board = L.build(by_dataset, tmp_path / "lb", sources=["results"])
    analyses = {a.dataset: a for a in board.analyses}
    assert {"kodak", "coco", "cityscapes", "ucf101"} <= set(analyses)
    headlines = {"coco": "yolox-nano/mAP", "cityscapes": "espnet/mIoU", "ucf101": "frame-fidelity/top1"}
    for dataset, headline in headlines.items():
        a = analyses[dataset]
        assert a.anchor is not None and a.anchor.name == ("h264" if dataset == "ucf101" else "jpeg"), a.anchor_note
        assert headline in rankings.track_metrics(a), rankings.track_metrics(a)
        rows = rankings.ranking(a, headline)  # each method ranked, or listed with why not
        assert all(r.rank or r.error for r in rows) and rows[0].rank == 1
    for dataset, human in (("kodak", "psnr-rgb"), ("ucf101", "psnr-yuv420")):
        assert sum(r.rank is not None for r in rankings.ranking(analyses[dataset], human)) >= 4, dataset
    md = board.markdown.read_text()
    assert "158 images (full evaluation set: 5000)" in md and "4 clips (full evaluation set: 3783)" in md
    assert "### yolox-nano/mAP, ground-truth protocol" in md and "### espnet/mIoU, ground-truth protocol" in md
    assert "### frame-fidelity/top1, fidelity protocol\n" in md
    # the caption in the task's own words (its recorded description), not one sentence per protocol
    assert "task frame-fidelity: fidelity protocol — fidelity of a frame-level ImageNet classifier" in md
    assert "n not recorded (older results)" in md and "yolox-nano/n = 158 at every point" in md


def test_the_matched_rate_comparisons_rank_every_method_on_every_axis(tmp_path):
    """COCO and Cityscapes at the same target bitrates (scripts/comparisons.sh): with the checks the README reads
    them with (isotonic fit, BD over any overlap), every codec and every human-machine method gets a BD-rate
    against JPEG on the human axis, and on the task's axis wherever its curve allows one (a briefly trained
    method whose task metric stays below JPEG's lowest, or is flat, is listed with the reason); the
    human-machine entries say how they were trained and on what."""
    by_dataset, _ = L.load_with_overrides([rankings.committed_results()])
    human_machine = {
        "coco": ("yolox-nano/mAP", {"eac", "feature-stream"}),
        "cityscapes": ("espnet/mIoU", {"eac", "icmh", "sicmh", "latent-scalable", "compressed-domain"}),
    }
    board = L.build(
        {d: by_dataset[d] for d in human_machine},
        tmp_path / "lb",
        sources=["results"],
        monotone="fit",
        min_overlap=0.05,
    )
    codecs = {"jpeg", "webp", "avif", "jpeg2000", "jpegxl", "hevc-intra", "bmshj2018-hyperprior-ours", "eac"}
    for a in board.analyses:
        headline, methods = human_machine[a.dataset]
        assert codecs | methods <= {e.name for e in a.entries}
        for r in rankings.ranking(a, "psnr-rgb"):
            assert r.rank is not None, (a.dataset, r.entry.name, r.error)
        for r in rankings.ranking(a, headline):
            assert r.rank is not None or (r.entry.name in methods and r.error), (
                a.dataset,
                r.entry.name,
                r.error,
            )
            assert r.rank is not None or r.entry.name not in codecs
    md = board.markdown.read_text()
    assert "modules yolox-nano (local, 1200–3600 steps, cpu)" in md
    assert "modules espnet (local, 900–2700 steps, cpu)" in md
    for summary in TRAINING_SUMMARIES:
        assert summary in md, summary


#: the leaderboard's training column for the methods trained here (steps include the backbone a file started from)
TRAINING_SUMMARIES = (
    "model (local, 500 steps, cpu)",  # feature-stream: bottlenecks from scratch
    "model (local, 8965–10965 steps, cpu, on bmshj2018-hyperprior-mse)",  # latent-scalable: codecs fine-tuned
    "model (local, 250 steps, cpu, on bmshj2018-hyperprior-mse)",  # compressed-domain: heads on the frozen codec
    "model (local, 290 steps, cpu, on bmshj2018-hyperprior-mse)",  # sicmh: encoder and residue codec started there
)


# ---------------------------------------------------------------------------------------------------------------
# a real headless browser


def chromium() -> str | None:
    env = os.environ.get("HMC_BENCH_CHROMIUM")
    if env:
        return env
    return next((p for p in map(shutil.which, CHROMIUM_NAMES) if p), None)


requires_chromium = pytest.mark.skipif(
    chromium() is None,
    reason="no chromium on PATH: apt-get install -y --no-install-recommends chromium (or set HMC_BENCH_CHROMIUM)",
)


def browse(page: Path, tmp_path: Path, *args: str, query: str = "") -> str:
    cmd = [
        chromium(),
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
        f"--user-data-dir={tmp_path / 'chromium-profile'}",
        *args,
        page.resolve().as_uri() + query,
    ]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr[-2000:]
    return res.stdout


def table_order(dom: str, table_id: str) -> list[str]:
    m = re.search(rf'<table[^>]*id="{table_id}"[^>]*>(.*?)</table>', dom, re.S)
    assert m, f"table {table_id} not in the DOM"
    return re.findall(r'<tr[^>]*data-method="([^"]+)"', m.group(1))


@pytest.mark.slow
@requires_chromium
def test_browser_sorts_on_header_click_and_loads_figures(board, tmp_path):
    _, out, _ = board
    page = out / "index.html"
    dom = browse(page, tmp_path, "--dump-dom")
    assert table_order(dom, "t-coco-psnr-rgb") == ["alpha", "beta", "jpeg", "gamma", "delta"]
    loaded = re.search(r'data-images-loaded="(\d+)/(\d+)"', dom)
    assert loaded and loaded.group(1) == loaded.group(2) and int(loaded.group(2)) >= 10, loaded
    widths = re.findall(r'data-natural-width="(\d+)"', dom)
    assert widths and all(int(w) > 0 for w in widths)

    dom = browse(page, tmp_path, "--dump-dom", query="?sort=method:desc")
    assert table_order(dom, "t-coco-psnr-rgb") == ["jpeg", "gamma", "delta", "beta", "alpha"]
    assert 'data-sorted-by="method:desc"' in dom and 'aria-sort="descending"' in dom

    dom = browse(page, tmp_path, "--dump-dom", query="?sort=bd-rate:desc")
    assert table_order(dom, "t-coco-psnr-rgb") == ["gamma", "jpeg", "beta", "alpha", "delta"]  # n/a stays last
    assert table_order(dom, "t-coco-detection-mAP") == ["delta", "gamma", "alpha", "jpeg", "beta"]


@pytest.mark.slow
@requires_chromium
def test_browser_screenshot(board, tmp_path):
    _, out, _ = board
    shot = tmp_path / "page.png"
    browse(out / "index.html", tmp_path, f"--screenshot={shot}", "--window-size=1280,1600", "--hide-scrollbars")
    data = shot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 50_000
    width, height = struct.unpack(">II", data[16:24])
    assert (width, height) == (1280, 1600)


# ---------------------------------------------------------------------------------------------------------------
# what stands behind a rank: complete runs, per-rate n, weights, total bits, the task's own protocol note


def test_partial_run_is_not_ranked_unless_asked_and_then_marked(tmp_path):
    """The issue's case: a full sweep next to one shard of another ranked the shard on its 2 images."""
    root = tmp_path / "res"
    full = [r for s in RB.SAMPLES for r in RB.sample_rows(s)]
    shard = [r for s in RB.SAMPLES[::3] for r in RB.sample_rows(s, scale=1.25)]  # shard 0/3: 2 of 6 samples
    RB.write_run(root, "kodak", "jpeg", full, sample_set=RB.SAMPLES)
    RB.write_run(root, "kodak", "webp", shard, sample_set=RB.SAMPLES, shard="0/3")
    args = ["leaderboard", "--no-committed", "--results", str(root)]
    res = bench(*args, "--out", str(tmp_path / "lb"), cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert "kodak psnr-rgb: 1. jpeg (+0.00%); not ranked: webp (partial: shard 0/3, 2 of 6 samples)" in res.stdout
    md = (tmp_path / "lb" / "leaderboard.md").read_text()
    assert "Not ranked: webp (partial: shard 0/3, 2 of 6 samples)." in md
    assert "| — | webp (partial) | SBAR | not ranked: partial: shard 0/3, 2 of 6 samples | — | 2 |" in md
    assert "6 images (full evaluation set: 24)" in md and "n = 6 at every point" in md  # only what is ranked
    page = (tmp_path / "lb" / "index.html").read_text()
    assert 'class="excluded" data-method="webp"' in page

    res = bench(*args, "--out", str(tmp_path / "lb2"), "--include-partial", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    shared = RB.SAMPLES[::3]
    a, w = RB.by_hand(full, shared), RB.by_hand(shard, shared)
    expected = bd_rate(
        RDCurve("a", np.array(a["bpp"]), np.array(a["psnr-rgb"]), "psnr-rgb"),
        RDCurve("w", np.array(w["bpp"]), np.array(w["psnr-rgb"]), "psnr-rgb"),
    ).value
    assert expected == pytest.approx(25.0, abs=1e-6)
    line = f"kodak psnr-rgb: 1. jpeg (+0.00%), 2. webp [partial] ({expected:+.2f}%, over the 2 samples both measured)"
    assert line in res.stdout
    md = (tmp_path / "lb2" / "leaderboard.md").read_text()
    assert "| 2 | webp (partial) | SBAR | +25.00 (over the 2 samples both measured) |" in md
    assert "n: jpeg 6 at every point, webp 2 at every point" in md and "(partial: webp 2 of them)" in md
    assert "ranked too (--include-partial), marked (partial)" in md
    assert 'class="partial" data-method="webp"' in (tmp_path / "lb2" / "index.html").read_text()


def test_weights_and_training_columns(tmp_path):
    """Each distinct weight file: role, short SHA-256, published or locally trained (steps, device), its backbone;
    the leaderboard's column sums that up per role and origin, the page keeps the full list as the cell's title."""
    root = tmp_path / "res"
    rows = [r for s in RB.SAMPLES for r in RB.sample_rows(s)]
    backbone = "b" * 64
    weights = [
        {"rate": 1, "role": "codec", "file": "q1.pth", "sha256": "1" * 64, "origin": "local", "steps": 7465,
         "total_steps": 8465, "device": "cpu"},
        {"rate": 2, "role": "codec", "file": "q2.pth", "sha256": "2" * 64, "origin": "published"},
        {"rate": 1, "role": "module", "file": "model.pt", "sha256": "3" * 64, "origin": "local", "steps": 400,
         "device": "cuda", "trained_on": {"backbone": backbone}, "built_on": ["bmshj2018-hyperprior-mse"]},
        {"rate": 2, "role": "module", "file": "model.pt", "sha256": "3" * 64, "origin": "local", "steps": 400,
         "device": "cuda", "trained_on": {"backbone": backbone}, "built_on": ["bmshj2018-hyperprior-mse"]},
    ]  # fmt: skip
    RB.write_run(root, "kodak", "jpeg", rows, sample_set=RB.SAMPLES)
    RB.write_run(root, "kodak", "icmh", rows, sample_set=RB.SAMPLES, weights=weights, rates=RB.RATES)
    by_dataset, _ = L.load_with_overrides([root])
    icmh = next(e for e in by_dataset["kodak"] if e.name == "icmh")
    expected = (
        "codec 111111111111 (local, 8465 steps, cpu; rate 1); codec 222222222222 (published; rate 2); "
        "module 333333333333 (local, 400 steps, cuda; rates 1, 2), trained on backbone bbbbbbbbbbbb"
    )
    assert report.weights_text(icmh) == expected
    summary = (
        "codec (local, 8465 steps, cpu); codec (published); "
        "module (local, 400 steps, cuda, on bmshj2018-hyperprior-mse)"
    )
    assert report.training_summary(icmh) == summary
    board = L.build(by_dataset, tmp_path / "lb", sources=[str(root)])
    md = board.markdown.read_text()
    assert f"| {summary} |" in md and "| jpeg | SBAR | 0 (anchor) | 0.00 | 6 | bitstream | — |" in md
    page = board.html.read_text()
    assert f'title="{html.escape(expected)}">{html.escape(summary)}</td>' in page


def test_total_bits_joint_view_for_an_mbid_method(tmp_path):
    """Human and task bits of an MBID method are separate streams: the total-bits view charges both."""
    root = tmp_path / "res"
    task = {"detection": {"protocol": "ground_truth", "headline": "detection/mAP", "complete": True}}

    def det(machine: list[float]) -> dict:
        return {"bpp@detection": machine, "detection/mAP": MAP, "detection/n": [6] * 4}

    jpeg = [r for s in RB.SAMPLES for r in RB.sample_rows(s)]
    mbid = [r for s in RB.SAMPLES for r in RB.sample_rows(s, scale=0.9, total_extra=0.3)]
    machine = [b * 0.5 for b in BPP]
    RB.write_run(root, "coco", "jpeg", jpeg, sample_set=RB.SAMPLES, tasks=task, task_results=det(BPP))
    RB.write_run(
        root, "coco", "mbid", mbid, sample_set=RB.SAMPLES, family="MBID", tasks=task, task_results=det(machine)
    )
    by_dataset, _ = L.load_with_overrides([root])
    board = L.build(by_dataset, tmp_path / "lb", sources=[str(root)])
    (coco,) = board.analyses
    assert rankings.total_joint_axes(coco) == [("psnr-rgb", "detection/mAP")]
    points = {p.entry.name: p for p in rankings.joint_view(coco, "psnr-rgb", "detection/mAP", total=True)}
    own = {p.entry.name: p for p in rankings.joint_view(coco, "psnr-rgb", "detection/mAP")}
    assert own["mbid"].x == pytest.approx(-10.0, abs=1e-6) and own["mbid"].y == pytest.approx(-50.0, abs=1e-6)
    res_m = json.loads((root / "coco" / "mbid.json").read_text())["results"]
    res_j = json.loads((root / "coco" / "jpeg.json").read_text())["results"]
    for value, metric in ((points["mbid"].x, "psnr-rgb"), (points["mbid"].y, "detection/mAP")):
        anchor = RDCurve("j", np.array(res_j["bpp_total"]), np.array(res_j[metric]), metric)
        test = RDCurve("m", np.array(res_m["bpp_total"]), np.array(res_m[metric]), metric)
        assert value == pytest.approx(bd_rate(anchor, test).value, abs=1e-9)
    assert points["mbid"].x == pytest.approx(20.0, abs=1e-6)  # 0.9 + 0.3 of JPEG's bits for the same PSNR
    md = board.markdown.read_text()
    assert "### Joint view on total bits: PSNR RGB × detection/mAP" in md
    assert "| mbid | MBID | +20.00 |" in md
    plot = board.total_joint_plots[("coco", "psnr-rgb", "detection/mAP")]
    assert plot.name == "joint-total-psnr-rgb-detection_mAP.png" and plot.stat().st_size > 5000
    assert 'id="jt-coco-psnr-rgb-detection-mAP"' in board.html.read_text()
    jpeg_only = comparison.analyse({"coco": [e for e in by_dataset["coco"] if e.name == "jpeg"]})[0]
    assert not rankings.total_joint_axes(jpeg_only)


def test_task_caption_in_the_tasks_own_words(tmp_path):
    """``matching`` is recorded as fidelity but is retrieval: its description, not the fidelity sentence, is shown."""
    root = tmp_path / "res"
    rows = [r for s in RB.SAMPLES for r in RB.sample_rows(s)]
    description = "matching (ORB, 1000 keypoints, ratio 0.8; retrieval among the evaluated images + 15 distractors)"
    tasks = {"matching": {"protocol": "fidelity", "headline": "matching/mAP", "description": description}}
    results = {"bpp@matching": BPP, "matching/mAP": MAP, "matching/n": [6] * 4}
    for name in ("jpeg", "webp"):
        RB.write_run(root, "kodak", name, rows, sample_set=RB.SAMPLES, tasks=tasks, task_results=results)
    (a,) = comparison.analyse(L.load_with_overrides([root])[0])
    caption = rankings.dataset_caption(a)
    assert f"task matching: fidelity protocol — {description}" in caption
    assert "agreement with the network's output" not in caption and "matching/n = 6 at every point" in caption
    assert rankings.track_label(a, "matching/mAP") == "matching/mAP, fidelity protocol"
    note = {**tasks["matching"], "protocol_note": "retrieval of each query's uncompressed image"}
    assert rankings.protocol_note(note, "matching") == "retrieval of each query's uncompressed image"
    assert rankings.protocol_note({"protocol": "fidelity"}) == rankings.PROTOCOL_NOTES["fidelity"]


def test_lossless_rows_in_the_caption(tmp_path):
    """Identical images keep PSNR = inf in their row; the caption counts them and states the rule."""
    root = tmp_path / "res"
    rows = [r for s in RB.SAMPLES for r in RB.sample_rows(s)]
    rows[-1] = {**rows[-1], "psnr-rgb": math.inf}  # img5 at q90
    RB.write_run(root, "kodak", "jpeg", rows, sample_set=RB.SAMPLES)
    RB.write_run(
        root, "kodak", "webp", [r for s in RB.SAMPLES for r in RB.sample_rows(s, scale=0.9)], sample_set=RB.SAMPLES
    )
    board = L.build(L.load_with_overrides([root])[0], tmp_path / "lb", sources=[str(root)])
    md = board.markdown.read_text()
    assert (
        "lossless rows: jpeg 1 at rate 90 (a lossless row (identical images) keeps PSNR = inf; the point's PSNR " in md
    )
    (a,) = board.analyses
    psnr = a.entries[0].curves["psnr-rgb"].values  # jpeg: the mean of the 5 finite rows at q90
    assert (
        psnr[-1] == pytest.approx(RB.by_hand(rows, RB.SAMPLES)["psnr-rgb"][-1], abs=1e-12) and np.isfinite(psnr).all()
    )
