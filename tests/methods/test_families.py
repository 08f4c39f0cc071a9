"""Family contracts: each target is charged, and decodes, exactly the streams its family gives it."""

from __future__ import annotations

import zlib

import cv2
import numpy as np
import pytest
from task_fixtures import DominantChannel

from bench.datasets.folder import ImageFolder
from bench.methods.base import HUMAN, Bitstream, Family, HeadPrediction, Method
from bench.methods.codecs.pillow import PillowCodec
from bench.methods.families import (
    ContractError,
    IndependentStreams,
    LayeredStreams,
    StreamContract,
    WholeStream,
    charged_streams,
)
from bench.running.runner import TaskJob, measure_sample


def _pixels(image: np.ndarray, step: int) -> bytes:
    """Real bytes: zlib of the image subsampled by ``step``."""
    return zlib.compress(np.ascontiguousarray(image[::step, ::step]).tobytes(), 9)


def _unpixels(data: bytes, step: int, height: int, width: int) -> np.ndarray:
    h, w = -(-height // step), -(-width // step)
    small = np.frombuffer(zlib.decompress(data), np.uint8).reshape(h, w, 3)
    return cv2.resize(small, (width, height), interpolation=cv2.INTER_NEAREST)


class Pyramid(Method):
    """MBHD toy: a header, then layers subsampled by 8, 4 and 1; a target decodes its finest layer."""

    family = Family.MBHD
    decodes_per_target = True
    steps = {"l8": 8, "l4": 4, "l1": 1}

    def __init__(self):
        super().__init__("pyramid", [1])
        self.received: dict[str, list[str]] = {}

    def contract(self) -> StreamContract:
        return LayeredStreams(
            {"base": ["header", "l8"], "mid": ["l4"], "full": ["l1"]}, needs={"coarse": "base", "finer": "mid"}
        )

    def encode(self, image, rate):
        streams = {"header": bytes([1, 2, 3])}
        streams.update({name: _pixels(image, s) for name, s in self.steps.items()})
        return Bitstream(streams, image.shape[0], image.shape[1])

    def decode(self, bitstream, target=HUMAN):
        self.received[target] = list(bitstream.streams)
        finest = [n for n in self.steps if n in bitstream.streams][-1]
        return _unpixels(bitstream.streams[finest], self.steps[finest], bitstream.height, bitstream.width)


class FeatureStream(Method):
    """MBID toy: a lossless image stream for people and an independent coarse stream for the task."""

    family = Family.MBID
    decodes_per_target = True

    def __init__(self):
        super().__init__("feature-toy", [1])
        self.received: dict[str, list[str]] = {}

    def contract(self) -> StreamContract:
        return IndependentStreams({HUMAN: ["image"], "dominant": ["features"]})

    def encode(self, image, rate):
        return Bitstream({"image": _pixels(image, 1), "features": _pixels(image, 16)}, image.shape[0], image.shape[1])

    def decode(self, bitstream, target=HUMAN):
        self.received[target] = list(bitstream.streams)
        if target == HUMAN:
            return _unpixels(bitstream.streams["image"], 1, bitstream.height, bitstream.width)
        return _unpixels(bitstream.streams["features"], 16, bitstream.height, bitstream.width)


class LatentHead(Method):
    """SBMD toy: one stream; the task's prediction is made from the decoded latent, no task network."""

    family = Family.SBMD
    decodes_per_target = True

    def __init__(self):
        super().__init__("head-toy", [1])

    def encode(self, image, rate):
        return Bitstream({"y": _pixels(image, 2)}, image.shape[0], image.shape[1])

    def decode(self, bitstream, target=HUMAN):
        image = _unpixels(bitstream.streams["y"], 2, bitstream.height, bitstream.width)
        if target == HUMAN:
            return image
        return HeadPrediction(DominantChannel().predict([image])[0])


@pytest.fixture()
def dataset(photo_folder):
    return ImageFolder(photo_folder)


def _measure(method, dataset, tasks, index=0):
    sample = dataset.samples()[index]
    jobs = [TaskJob(t, [1], need_reference=False) for t in tasks]
    result = measure_sample(method, dataset, sample, [1], ["psnr-rgb"], jobs)
    return dataset.load(sample), method.encode(dataset.load(sample), 1), result


def test_mbhd_each_target_is_charged_the_prefix_of_its_layers(dataset):
    method = Pyramid()
    image, written, result = _measure(method, dataset, [DominantChannel("coarse"), DominantChannel("finer")])
    sizes = {name: len(data) for name, data in written.streams.items()}
    h, w = image.shape[:2]
    expected = {
        "coarse": sizes["header"] + sizes["l8"],
        "finer": sizes["header"] + sizes["l8"] + sizes["l4"],
        HUMAN: sum(sizes.values()),
    }
    assert expected["coarse"] < expected["finer"] < expected[HUMAN]
    (human,) = result.human
    assert human["error"] is None
    assert human["bytes"] == expected[HUMAN] and human["bpp"] == expected[HUMAN] * 8 / (h * w)
    assert human["bytes_by_stream"] == sizes
    assert human["psnr-rgb"] == float("inf")  # the full layer is lossless
    for task in ("coarse", "finer"):
        (row,) = result.tasks[task]
        assert row["error"] is None
        assert row["bytes"] == expected[task] and row["bpp"] == expected[task] * 8 / (h * w)
        assert len(row["prediction"]) == 16
    # each decode received only its prefix, in layer order
    assert method.received == {
        HUMAN: ["header", "l8", "l4", "l1"],
        "coarse": ["header", "l8"],
        "finer": ["header", "l8", "l4"],
    }


def test_mbid_each_target_is_charged_its_own_stream_only(dataset):
    method = FeatureStream()
    image, written, result = _measure(method, dataset, [DominantChannel("dominant")])
    (human,) = result.human
    (task,) = result.tasks["dominant"]
    assert human["bytes"] == len(written.streams["image"])
    assert task["bytes"] == len(written.streams["features"])
    assert human["bytes"] + task["bytes"] == written.num_bytes()
    assert method.received == {HUMAN: ["image"], "dominant": ["features"]}


def test_sbmd_head_prediction_skips_the_task_network_and_costs_the_whole_stream(dataset):
    method = LatentHead()
    task = DominantChannel("dominant")
    image, written, result = _measure(method, dataset, [task])
    (row,) = result.tasks["dominant"]
    assert row["error"] is None and task.calls == 0  # the network never ran
    decoded = _unpixels(written.streams["y"], 2, *image.shape[:2])
    assert row["prediction"] == DominantChannel().predict([decoded])[0]
    assert row["bytes"] == result.human[0]["bytes"] == written.num_bytes()


def test_sbar_codec_plus_task_charges_the_whole_stream(dataset):
    method = PillowCodec("jpeg", [50], "JPEG")
    task = DominantChannel("dominant")
    sample = dataset.samples()[1]
    result = measure_sample(method, dataset, sample, [50], ["psnr-rgb"], [TaskJob(task, [50])])
    written = method.encode(dataset.load(sample), 50)
    assert method.contract().family == Family.SBAR
    assert result.tasks["dominant"][0]["bytes"] == result.human[0]["bytes"] == written.num_bytes()
    assert task.calls == 1  # SBAR: the task network runs on the reconstruction


def test_a_target_the_method_does_not_serve_fails_its_rows_with_the_reason(dataset):
    method = Pyramid()
    _, _, result = _measure(method, dataset, [DominantChannel("segmentation")])
    (row,) = result.tasks["segmentation"]
    assert "no layer is declared for target 'segmentation'" in row["error"]
    assert "['human', 'coarse', 'finer']" in row["error"]
    assert result.human[0]["error"] is None  # the human row is unaffected


def test_a_stream_outside_every_layer_is_refused():
    contract = LayeredStreams({"base": ["z"], "full": ["y"]}, needs={"t": "base"})
    stray = Bitstream({"z": b"1", "y": b"22", "extra": b"333"}, 8, 8)
    with pytest.raises(ContractError, match=r"stream\(s\) \['extra'\] belong to no layer"):
        contract.streams_for("t", stray)
    missing = Bitstream({"z": b"1"}, 8, 8)
    with pytest.raises(ContractError, match=r"\['y'\] are not in the bitstream"):
        contract.streams_for(HUMAN, missing)


def test_contract_declarations_are_checked():
    with pytest.raises(ContractError, match="unknown layer"):
        LayeredStreams({"base": ["z"]}, needs={"t": "enh"})
    with pytest.raises(ContractError, match="in layer 'a' and in layer 'b'"):
        LayeredStreams({"a": ["z"], "b": ["z"]}, needs={})
    with pytest.raises(ContractError, match="must declare the 'human'"):
        IndependentStreams({"t": ["f"]})
    with pytest.raises(ContractError, match="SBAR and SBMD"):
        WholeStream(Family.MBID)


def test_a_contract_of_another_family_is_refused():
    class Liar(Pyramid):
        family = Family.SBAR

    with pytest.raises(ContractError, match="is SBAR but declares a MBHD contract"):
        charged_streams(Liar(), HUMAN, Bitstream({"header": b"", "l8": b"", "l4": b"", "l1": b""}, 1, 1))

    class Undeclared(Method):
        family = Family.MBID

        def encode(self, image, rate): ...

        def decode(self, bitstream, target=HUMAN): ...

    with pytest.raises(NotImplementedError, match="must declare its contract"):
        Undeclared("u", [1]).streams_for(HUMAN, Bitstream({"a": b""}, 1, 1))
