"""The embedded video dataset: clips panned across scikit-image's photographs, the same pixels on every machine."""

from __future__ import annotations

import numpy as np
import pytest
import skimage.data
from hydra import compose, initialize_config_module
from hydra.utils import instantiate

from bench.datasets.base import DatasetUnavailable
from bench.datasets.video_samples import VideoSamples, pan_clip
from bench.io.video import Clip


def test_a_clip_is_the_photograph_under_a_whole_pixel_pan():
    dataset = VideoSamples(images=["coffee"], frames=5, size=(161, 200), pan=(3, 5), fps=30)
    (sample,) = dataset.samples()
    clip = dataset.load(sample)
    assert isinstance(clip, Clip) and clip.shape == (5, 161, 200, 3) and clip.fps == 30.0
    photo = skimage.data.coffee()  # 400 x 600: the path (161 + 12) x (200 + 20) is centred in it
    top, left = (400 - 173) // 2, (600 - 220) // 2
    for t in range(5):
        y, x = top + 3 * t, left + 5 * t
        np.testing.assert_array_equal(clip[t], photo[y : y + 161, x : x + 200])
    assert sample.id == "coffee" and "pan 3,5 px/frame" in sample.source


def test_the_config_is_the_embedded_video_default():
    with initialize_config_module(config_module="bench.conf", version_base="1.3"):
        cfg = compose("config", overrides=["dataset=video-samples", "dataset.frames=2"])
    dataset = instantiate(cfg.dataset)
    assert dataset.media == "video" and dataset.name == "video-samples"
    assert [s.id for s in dataset.samples()] == ["astronaut", "coffee", "chelsea", "rocket"]
    clips = [dataset.load(s) for s in dataset.samples()]  # every default photograph holds the default path
    assert {c.shape for c in clips} == {(2, 240, 320, 3)} and {c.fps for c in clips} == {25.0}
    grey = VideoSamples(images=["camera"], frames=2, size=(64, 64))
    assert grey.load(grey.samples()[0]).shape == (2, 64, 64, 3)  # greyscale photographs become RGB


def test_bad_parameters_and_photographs_are_named():
    with pytest.raises(ValueError, match="size \\(height, width\\) must be two integers"):
        VideoSamples(size=(240,))
    with pytest.raises(ValueError, match="pan .* must be integers >= 0"):
        VideoSamples(pan=(1, -1))
    with pytest.raises(ValueError, match="frames must be an integer >= 1"):
        VideoSamples(frames=0)
    with pytest.raises(ValueError, match="images must be a non-empty list"):
        VideoSamples(images=[])
    small = VideoSamples(images=["chelsea"], frames=16, size=(290, 400))
    with pytest.raises(ValueError, match=r"skimage.data.chelsea: a 290x400 window .* needs 320x460 pixels, .* 300x451"):
        small.load(small.samples()[0])
    missing = VideoSamples(images=["no_such_photo"])
    with pytest.raises(DatasetUnavailable, match="scikit-image has no sample image 'no_such_photo'"):
        missing.load(missing.samples()[0])
    with pytest.raises(ValueError, match="needs 5x5 pixels, the image has 4x4"):
        pan_clip(np.zeros((4, 4, 3), np.uint8), frames=2, size=(4, 4), pan=(1, 1))
