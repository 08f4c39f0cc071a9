"""Feature streams beside an image codec (MBID): learned feature bottleneck and CDVS-like descriptors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from learned_method_fixtures import (  # noqa: F401 - one_torch_thread is an autouse fixture
    fixed_batch,
    module_digests,
    one_torch_thread,
    small_photos,
    tiny_classifier,
    train_briefly,
)
from split_fixtures import tiny_espnet_task, tiny_yolox_task

from bench.methods.base import HUMAN, Bitstream, CodecError, HeadPrediction
from bench.methods.codecs.pillow import PillowCodec
from bench.methods.human_machine.feature_stream import DescriptorStream, FeatureStream, pack_streams, unpack_streams
from bench.running.runner import TaskJob, measure_sample
from bench.tasks.matching import DescriptorMatching, extract

SPLIT = "features.3"


@pytest.fixture(scope="module")
def task():
    return tiny_classifier()


@pytest.fixture(scope="module")
def jpeg():
    return PillowCodec("jpeg", [20, 60], "JPEG")


@pytest.fixture(scope="module")
def learned(task, jpeg):
    method = FeatureStream("feature-stream", [1, 2], jpeg, task, split=SPLIT, hidden_channels=16, latent_channels=8)
    torch.manual_seed(6)
    method.set_network(1, method.new_network())
    method.set_network(2, method.new_network())
    return method


@pytest.fixture(scope="module")
def image(photos):
    return np.ascontiguousarray(photos["astronaut"][:192, 100:356])


def test_the_human_container_round_trips_and_rejects_damage():
    streams = {"header": b"\x01\x02", "y": b"abc" * 50, "z": b""}
    assert unpack_streams(pack_streams(streams)) == streams
    with pytest.raises(ValueError, match="stream 'y' needs 150 bytes"):
        unpack_streams(pack_streams(streams)[:-10])
    with pytest.raises(ValueError, match="after the last stream"):
        unpack_streams(pack_streams(streams) + b"x")


def test_learned_features_decode_from_bytes_as_in_memory(learned, image):
    written = learned.encode(image, 1)
    assert list(written.streams) == ["human", "features"]
    net = learned.network(1)
    with torch.no_grad():
        features = learned.features(image)
        y_hat, _ = net.entropy_bottleneck(net.g_a(features))  # eval mode: rounded around the medians
        expected = net.g_s(y_hat)
        logits = learned.split_network.back(expected, image.shape[:2])
    _, decoded = learned.decode_features(written.streams["features"])
    assert torch.equal(decoded, expected)
    prediction = learned.decode(written, "cls")
    assert isinstance(prediction, HeadPrediction)
    assert prediction.value == learned.split_network.predictions(logits, image.shape[:2])[0]


def test_each_target_is_charged_its_own_stream_only(learned, jpeg, task, photos, tmp_path):
    dataset = small_photos(tmp_path / "img", photos)
    sample = dataset.samples()[0]
    result = measure_sample(learned, dataset, sample, [2], ["psnr-rgb"], [TaskJob(task, [2])])
    img = dataset.load(sample)
    written = learned.encode(img, 2)
    (human,) = result.human
    (row,) = result.tasks["cls"]
    assert human["error"] is None and row["error"] is None
    assert human["bytes"] == len(written.streams["human"])
    assert row["bytes"] == len(written.streams["features"])
    # the human stream is the JPEG file (at the human codec's 2nd quality) plus its small container
    jpeg_bytes = jpeg.encode(img, 60).streams["main"]
    assert unpack_streams(written.streams["human"]) == {"main": jpeg_bytes}
    assert 0 < human["bytes"] - len(jpeg_bytes) <= 8
    np.testing.assert_array_equal(
        learned.decode(written, HUMAN), jpeg.decode(Bitstream({"main": jpeg_bytes}, *img.shape[:2]))
    )
    assert set(row["prediction"]) == {"top5", "scores"}


def test_feature_bottleneck_training_lowers_the_loss_with_the_task_network_frozen(task, jpeg, photos, tmp_path):
    dataset = small_photos(tmp_path / "img", photos)
    method = FeatureStream("feature-stream", [1], jpeg, task, split=SPLIT, hidden_channels=16, latent_channels=8)
    settings = {"lambdas": [10.0], "stages": {"bottleneck": {"lr": 3e-3, "batch_size": 2, "steps": 12}}}
    torch.manual_seed(0)
    recipe = method.training_recipe(1, [task], settings, "cpu")
    frozen = module_digests(task.network)
    batch = fixed_batch(dataset)
    before = recipe.stages[0].loss(batch)["loss"].item()
    result = train_briefly(recipe, dataset, tmp_path / "out", settings["stages"])
    after = recipe.stages[0].loss(batch)["loss"].item()
    assert after < before
    assert module_digests(task.network) == frozen
    assert result.validation["bottleneck"]["bpp_cls"] > 0
    trained = FeatureStream(
        "feature-stream",
        [1],
        jpeg,
        task,
        split=SPLIT,
        hidden_channels=16,
        latent_channels=8,
        checkpoints={1: str(tmp_path / "out" / "model.pt")},
    )
    assert trained.unavailable_reason() is None
    image = dataset.load(dataset.samples()[-1])
    assert trained.encode(image, 1).streams == method.encode(image, 1).streams


# --- the task networks with weights offline: YOLOX-Nano's and ESPNet's cuts (small stand-ins here) ------------


@pytest.fixture(scope="module")
def split_tasks(tmp_path_factory):
    folder = tmp_path_factory.mktemp("split-tasks")
    return {"yolox": tiny_yolox_task(folder), "espnet": tiny_espnet_task(folder)}


@pytest.mark.parametrize("kind", ["yolox", "espnet"])
def test_yolox_and_espnet_features_train_and_decode_from_bytes_as_in_memory(kind, split_tasks, jpeg, photos, tmp_path):
    task = split_tasks[kind]
    dataset = small_photos(tmp_path / "img", photos)
    method = FeatureStream("feature-stream", [1], jpeg, task, hidden_channels=16, latent_channels=8)
    assert method.served_tasks() == [task.name]
    settings = {"lambdas": [10.0], "stages": {"bottleneck": {"lr": 3e-3, "batch_size": 2, "steps": 8}}}
    torch.manual_seed(0)
    recipe = method.training_recipe(1, [task], settings, "cpu")
    split = method.split_network
    assert split.split == {"yolox": "stride8", "espnet": "level3"}[kind]
    frozen = module_digests(split.network)
    batch = fixed_batch(dataset)
    before = recipe.stages[0].loss(batch)["loss"].item()
    train_briefly(recipe, dataset, tmp_path / "out", settings["stages"])
    after = recipe.stages[0].loss(batch)["loss"].item()
    assert after < before
    assert module_digests(split.network) == frozen

    image = dataset.load(dataset.samples()[-1])
    h, w = image.shape[:2]
    written = method.encode(image, 1)
    net = method.network(1)
    with torch.no_grad():
        features = split.front_image(image)  # the task's own preprocessing: letterbox / resize
        y_hat, _ = net.entropy_bottleneck(net.g_a(features))  # eval mode: rounded around the medians
        expected = net.g_s(y_hat)
        prediction = split.predictions(split.back(expected, (h, w)), (h, w))[0]
    assert features.shape[-2:] == split.grid_hw((h, w))
    _, decoded = method.decode_features(written.streams["features"])
    assert torch.equal(decoded, expected)
    received = Bitstream({"features": written.streams["features"]}, h, w)
    assert method.decode(received, task.name).value == prediction


# --- CDVS-like descriptors -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("detector", "coord_step", "descriptor_step"), [("orb", 1.0, 1), ("sift", 0.5, 1), ("sift", 2.0, 16)]
)
def test_the_descriptor_stream_decodes_to_exactly_the_quantised_keypoints(
    jpeg, image, detector, coord_step, descriptor_step
):
    method = DescriptorStream(
        "cdvs",
        [1, 2],
        jpeg,
        DescriptorMatching("matching", detector),
        detector=detector,
        keypoints=[40, 150],
        coord_step=coord_step,
        descriptor_step=descriptor_step,
    )
    assert method.unavailable_reason() is None
    for rate, budget in ((1, 40), (2, 150)):
        data = method.encode(image, rate).streams["descriptors"]
        expected, _, _ = method.quantise(extract(image, detector, budget))
        decoded = method.decode_descriptors(data)
        assert len(decoded.points) == len(expected.points) > 0.5 * budget
        np.testing.assert_array_equal(decoded.points, expected.points)
        np.testing.assert_array_equal(decoded.descriptors, expected.descriptors)
        assert np.all(np.abs(decoded.points / coord_step - np.round(decoded.points / coord_step)) < 1e-9)
    assert len(method.encode(image, 1).streams["descriptors"]) < len(method.encode(image, 2).streams["descriptors"])


def test_lzma_codes_the_descriptors_compactly(jpeg, image):
    method = DescriptorStream(
        "cdvs", [1], jpeg, DescriptorMatching("matching", "sift"), detector="sift", keypoints=[150], descriptor_step=8
    )
    data = method.encode(image, 1).streams["descriptors"]
    raw = 150 * (4 + 128)  # two 16-bit coordinates and 128 bytes per keypoint, uncoded
    assert len(data) < 0.6 * raw
    with pytest.raises(CodecError, match="corrupt descriptor stream"):
        method.decode_descriptors(data[:-20])


def test_cdvs_charges_the_task_the_descriptor_stream_and_scores_it(jpeg, photos, tmp_path):
    dataset = small_photos(tmp_path / "img", photos, size=(192, 256))
    task = DescriptorMatching("matching", "orb", max_keypoints=500)
    method = DescriptorStream("cdvs", [1, 2], jpeg, task, keypoints=[60, 300])
    sample = dataset.samples()[0]
    result = measure_sample(method, dataset, sample, [1, 2], ["psnr-rgb"], [TaskJob(task, [1, 2], need_reference=True)])
    written = {r: method.encode(dataset.load(sample), r) for r in (1, 2)}
    rows = {row["rate"]: row for row in result.tasks["matching"]}
    humans = {row["rate"]: row for row in result.human}
    for r in (1, 2):
        assert rows[r]["bytes"] == len(written[r].streams["descriptors"])
        assert humans[r]["bytes"] == len(written[r].streams["human"])
    reference = task.reference_from_prediction(result.references["matching"][0]["prediction"])
    scores = {r: task.evaluate({"s": rows[r]["prediction"]}, {"s": reference}) for r in (1, 2)}
    assert scores[2]["mAP"] == 1.0 and scores[2]["tpr"] == 1.0  # retrieved first among the distractors, verified
    assert scores[2]["inliers"] > scores[1]["inliers"]


def test_cdvs_config_errors_are_clear(jpeg):
    with pytest.raises(ValueError, match="descriptor_step"):
        DescriptorStream("cdvs", [1], jpeg, None, detector="orb", descriptor_step=4)
    with pytest.raises(ValueError, match="multiple of 1/16"):
        DescriptorStream("cdvs", [1], jpeg, None, coord_step=0.3)
    with pytest.raises(ValueError, match="rate point 3 has no human codec rate"):
        DescriptorStream("cdvs", [1, 2, 3], jpeg, None)
    sift_task = DescriptorMatching("matching", "sift")
    assert "matches sift" in DescriptorStream("cdvs", [1], jpeg, sift_task, detector="orb").unavailable_reason()
    assert "task=matching" in DescriptorStream("cdvs", [1], jpeg, tiny_classifier()).unavailable_reason()
