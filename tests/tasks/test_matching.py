"""The matching task's retrieval / verification protocol: metric definitions, database, distractors, runs."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
from PIL import Image

from bench.tasks.matching import (
    DEFAULT_DISTRACTORS,
    DescriptorMatching,
    LocalFeatures,
    extract,
    load_distractor,
    match,
    retrieval_metrics,
)

MIN_INLIERS = 15


@pytest.fixture(scope="module")
def task() -> DescriptorMatching:
    """The task as configured, distractor features computed once for the module."""
    return DescriptorMatching("matching", "orb", max_keypoints=500)


@pytest.fixture(scope="module")
def features(photos) -> dict[str, dict]:
    """Predictions (= references) of three photographs and of a JPEG q=30 copy of each."""
    t = DescriptorMatching("matching", "orb", max_keypoints=500, distractors=[])
    out = {name: t.predict([img])[0] for name, img in photos.items()}
    for name, img in photos.items():
        buf = io.BytesIO()
        Image.fromarray(img).save(buf, "JPEG", quality=30)
        out[f"{name}-jpeg"] = t.predict([np.asarray(Image.open(buf).convert("RGB"))])[0]
    return out


# --- the metric definitions on hand-built score matrices ----------------------------------------------------------


def test_retrieval_metrics_follow_their_definitions():
    # query 0: relevant entry 0 first; query 1: relevant entry 1 third (after 2 and 3); query 2: tied for first
    scores = np.array(
        [
            [90, 5, 0, 4],
            [3, 20, 40, 25],
            [30, 0, 30, 0],
        ]
    )
    got = retrieval_metrics(scores, [0, 1, 2], MIN_INLIERS)
    assert got["mAP"] == pytest.approx((1 + 1 / 3 + 1 / 2) / 3)  # ties rank the relevant entry last among them
    assert got["top1"] == pytest.approx(1 / 3)
    assert got["tpr"] == pytest.approx(1.0)  # 90, 20, 30 >= 15
    assert got["fpr"] == pytest.approx(3 / 9)  # 40, 25, 30 of the 9 non-matching pairs
    assert got["inliers"] == pytest.approx((90 + 20 + 30) / 3)
    assert got["database"] == 4
    # 9 negatives: 1 % of them allows none, so the threshold sits at the highest negative (40): 90 alone passes
    assert got["tpr@fpr0.01"] == pytest.approx(1 / 3)


def test_tpr_at_one_percent_fpr_allows_one_false_match_in_a_hundred():
    # 2 queries x 51 entries = 100 non-matching pairs; one false match may pass, the second-highest one may not
    scores = np.zeros((2, 51))
    scores[0, 1], scores[1, 2] = 30, 20
    scores[0, 0], scores[1, 1] = 25, 18
    got = retrieval_metrics(scores, [0, 1], MIN_INLIERS)
    assert got["tpr@fpr0.01"] == pytest.approx(0.5)  # threshold > 20: 25 passes, 18 does not
    assert got["fpr"] == pytest.approx(2 / 100) and got["tpr"] == pytest.approx(1.0)
    assert got["mAP"] == pytest.approx((1 / 2 + 1 / 2) / 2) and got["top1"] == 0.0


def test_an_unmatched_query_scores_one_over_the_database_size():
    got = retrieval_metrics(np.zeros((1, 40)), [7], MIN_INLIERS)
    assert got["mAP"] == pytest.approx(1 / 40)
    assert got["top1"] == 0.0 and got["tpr@fpr0.01"] == 0.0


def test_bad_score_matrices_are_clear_errors():
    with pytest.raises(ValueError, match="one relevant entry per query"):
        retrieval_metrics(np.zeros((2, 3)), [0], MIN_INLIERS)
    with pytest.raises(ValueError, match="outside a database of 3"):
        retrieval_metrics(np.zeros((1, 3)), [3], MIN_INLIERS)
    with pytest.raises(ValueError, match="empty database"):
        retrieval_metrics(np.zeros((1, 0)), [0], MIN_INLIERS)


# --- the protocol on real photographs ---------------------------------------------------------------------------


def test_an_identical_query_retrieves_its_image_first(task, features):
    refs = {name: features[name] for name in ("astronaut", "coffee", "chelsea")}
    got = task.evaluate({"astronaut": refs["astronaut"]}, refs)
    assert got["mAP"] == 1.0 and got["top1"] == 1.0 and got["tpr@fpr0.01"] == 1.0
    assert got["inliers"] == len(refs["astronaut"]["points"]) == 500
    # 3 samples + the 15 default distractors less the 3 that are these very photographs
    assert got["database"] == 3 + len(DEFAULT_DISTRACTORS) - 3


def test_compressed_queries_are_retrieved_and_verified(task, features):
    refs = {name: features[name] for name in ("astronaut", "coffee", "chelsea")}
    got = task.evaluate({name: features[f"{name}-jpeg"] for name in refs}, refs)
    assert got["mAP"] == 1.0 and got["tpr"] == 1.0 and got["fpr"] == 0.0
    assert MIN_INLIERS < got["inliers"] < 500  # JPEG moves keypoints: fewer inliers than the identical query


def test_another_images_query_ranks_its_own_image_below(task, features):
    refs = {name: features[name] for name in ("astronaut", "coffee", "chelsea")}
    # sample "astronaut" received coffee's descriptors: coffee's entry wins, astronaut's is no better than the rest
    matrix, relevant, names = task.scores({"astronaut": features["coffee-jpeg"]}, refs)
    assert names[int(np.argmax(matrix[0]))] == "coffee"
    got = task.evaluate({"astronaut": features["coffee-jpeg"]}, refs)
    assert got["top1"] == 0.0 and got["tpr"] == 0.0
    assert got["mAP"] <= 0.5


def test_distractors_lower_the_score_of_a_weak_query(features, photos):
    # a weak query: 6 of astronaut's keypoints and the 300 strongest of the brick texture (a photo mostly of brick)
    astronaut = LocalFeatures.from_json(features["astronaut"])
    brick = extract(load_distractor("brick"), "orb", 300)
    weak = LocalFeatures(
        "orb",
        astronaut.height,
        astronaut.width,
        np.concatenate([astronaut.points[:6], brick.points]),
        np.concatenate([astronaut.descriptors[:6], brick.descriptors]),
    ).to_json()
    refs = {name: features[name] for name in ("astronaut", "coffee")}
    alone = DescriptorMatching("matching", "orb", max_keypoints=500, distractors=[]).evaluate({"astronaut": weak}, refs)
    crowded = DescriptorMatching("matching", "orb", max_keypoints=500, distractors=["brick", "grass"])
    among = crowded.evaluate({"astronaut": weak}, refs)
    assert alone["mAP"] == 1.0 and alone["database"] == 2
    assert among["database"] == 4 and among["mAP"] == 0.5 and among["top1"] == 0.0  # brick ranks first


def test_distractors_that_duplicate_a_database_image_are_left_out(features):
    t = DescriptorMatching("matching", "orb", max_keypoints=500, distractors=["coffee", "brick"])
    # the database holds a JPEG copy of coffee, not the same pixels: still a duplicate of the coffee distractor
    refs = {"cup": features["coffee-jpeg"], "astronaut": features["astronaut"]}
    kept = t.distractor_entries([LocalFeatures.from_json(r) for r in refs.values()])
    assert [name for name, _ in kept] == ["brick"]
    got = t.evaluate({"cup": features["coffee"]}, refs)
    assert got["database"] == 3 and got["mAP"] == 1.0  # coffee's own photograph does not compete with its entry


def test_no_pose_is_assumed_another_view_is_retrieved():
    import skimage.data

    left, right, _ = skimage.data.stereo_motorcycle()
    t = DescriptorMatching("matching", "orb", max_keypoints=1000)
    query, entry = t.predict([left])[0], t.predict([right])[0]
    got = t.evaluate({"motorcycle": query}, {"motorcycle": entry})
    assert got["top1"] == 1.0 and got["tpr"] == 1.0
    shifted = LocalFeatures.from_json(entry)
    shifted.points += 20  # the same keypoints moved: a translation verifies like any homography
    assert match(shifted, LocalFeatures.from_json(entry)).inliers == len(shifted.points)


def test_the_database_is_every_reference_not_only_the_queries(task, features):
    refs = {name: features[name] for name in ("astronaut", "coffee", "chelsea")}
    got = task.evaluate({"coffee": features["coffee-jpeg"]}, refs)
    assert got["database"] == 3 + len(DEFAULT_DISTRACTORS) - 3


def test_bad_input_is_a_clear_error(task, features):
    refs = {"astronaut": features["astronaut"]}
    with pytest.raises(ValueError, match="prediction of sample 'astronaut': not a matching prediction"):
        task.evaluate({"astronaut": {"detector": "orb", "points": []}}, refs)
    with pytest.raises(KeyError, match="no reference"):
        task.evaluate({"coffee": features["coffee"]}, refs)
    with pytest.raises(ValueError, match="no database"):
        task.evaluate({"coffee": features["coffee"]}, {})
    with pytest.raises(ValueError, match="reference of sample 'astronaut'"):
        task.evaluate({"astronaut": features["astronaut"]}, {"astronaut": {"detector": "orb"}})
    sift = DescriptorMatching("matching", "sift", distractors=[])
    with pytest.raises(ValueError, match="cannot match orb descriptors against sift"):
        sift.evaluate({"astronaut": features["astronaut"]}, {"astronaut": sift.predict([load_distractor("coins")])[0]})
    with pytest.raises(ValueError, match="unknown distractors \\['eagle'\\]"):
        DescriptorMatching("matching", distractors=["eagle"])  # fetched by scikit-image over the network: refused
    assert np.isnan(task.evaluate({}, refs)["mAP"])


def test_a_failed_query_leaves_the_database_whole(tmp_path, photo_folder):
    from bench.datasets.folder import ImageFolder
    from bench.methods.base import CodecError
    from bench.methods.codecs.pillow import PillowCodec
    from bench.running.evaluation import evaluate_task
    from bench.running.runner import TaskLogs, run_sweep
    from bench.running.store import RunStore

    class FailsOnChelsea(PillowCodec):
        def encode(self, image, rate):
            if rate == 20 and image.shape[:2] == (211, 297):  # the cropped chelsea.png of photo_folder
                raise CodecError("refused")
            return super().encode(image, rate)

    dataset = ImageFolder(photo_folder)
    method = FailsOnChelsea("jpeg", [20, 80], "JPEG")
    task = DescriptorMatching("matching", "orb", max_keypoints=500, distractors=[])
    store = RunStore(tmp_path / "results", dataset.name, method.name, "h")
    logs = TaskLogs(task, store.task_log("matching", "t"), store.reference_log("matching", "t"))
    run_sweep(method, dataset, store, workers=1, progress=False, tasks=[logs])
    table, meta = evaluate_task(logs, dataset, dataset.samples(), method.rates)
    assert table["matching/n"].tolist() == [2, 3]
    assert table["matching/database"].tolist() == [3, 3]  # chelsea's image still stands in the database at q=20
    assert table["matching/mAP"].tolist() == [1.0, 1.0]
    assert meta["failures"] == 1 and meta["headline"] == "matching/mAP"


# --- end to end: a plain codec and the descriptor stream, from the config ----------------------------------------


def run(tmp_path, *overrides: str) -> dict:
    from hydra import compose, initialize_config_module

    from bench.running.app import run_job

    with initialize_config_module(config_module="bench.conf", version_base="1.3"):
        cfg = compose(
            "config",
            overrides=["dataset=samples", "task=matching", "limit=3", f"results_dir={tmp_path}", "progress=false",
                       "workers=1", *overrides],
        )  # fmt: skip
        out = run_job(cfg)
    return json.loads(open(out["json"]).read())


def test_jpeg_and_the_descriptor_stream_report_retrieval_metrics(tmp_path):
    jpeg = run(tmp_path, "method=jpeg", "method.rates=[10,90]")
    cdvs = run(tmp_path, "method=feature-stream-cdvs", "method.rates=[1,2]", "method.keypoints=[4,100]")
    for doc in (jpeg, cdvs):
        meta = doc["meta"]["tasks"]["matching"]
        assert meta["headline"] == "matching/mAP" and meta["protocol"] == "fidelity"
        assert "scikit-image" in meta["versions"]
        results = doc["results"]
        assert results["matching/n"] == [3, 3]
        # 3 samples (astronaut, coffee, chelsea) + 15 distractors less those three photographs
        assert results["matching/database"] == [15, 15]
    r = jpeg["results"]
    assert r["matching/mAP"] == [1.0, 1.0] and r["matching/tpr@fpr0.01"] == [1.0, 1.0]
    assert r["matching/inliers"][0] < r["matching/inliers"][1]  # q=10 loses keypoints that q=90 keeps
    r = cdvs["results"]
    # 4 keypoints cannot reach 15 inliers, and RANSAC on 4 matches proves little; 100 keypoints verify
    assert r["matching/tpr"] == [0.0, 1.0] and r["matching/mAP"][1] == 1.0 and r["matching/inliers"][0] <= 4
    assert r["bpp@matching"][1] < jpeg["results"]["bpp@matching"][0] / 2  # 100 keypoints cost under half of q=10
