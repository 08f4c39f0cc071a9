"""Reading clips with PyAV, frame sampling, bad input, and the UCF101 / video-folder datasets."""

from __future__ import annotations

import pickle
from fractions import Fraction

import av
import numpy as np
import pytest

from bench.datasets.base import DatasetUnavailable, Sample
from bench.datasets.ucf101 import UCF101, SplitFileError, read_class_index, read_split
from bench.datasets.video_folder import VideoFolder
from bench.io.video import Clip, FrameSampler, VideoError, read_clip
from tests.video_fixtures import moving_shapes, write_ucf101_tree, write_video


def frame_numbers(clip: np.ndarray) -> list[int]:
    """The index each frame carries in its top-left block (10 + 12 i)."""
    return [int(round((float(np.asarray(f[:8, :8]).mean()) - 10) / 12)) for f in clip]


def test_clips_decode_every_frame_in_presentation_order(tmp_path):
    path = write_video(tmp_path / "b_frames.avi", moving_shapes(14, 48, 64))  # MPEG-4 with B-frames, as UCF101
    clip = read_clip(path)
    assert isinstance(clip, Clip) and clip.shape == (14, 48, 64, 3) and clip.dtype == np.uint8
    assert frame_numbers(clip) == list(range(14))
    assert clip.fps == 25.0
    again = pickle.loads(pickle.dumps(clip))  # what a worker process would receive
    assert again.fps == 25.0 and np.array_equal(again, clip)


def test_variable_frame_rate_keeps_every_frame_and_the_average_rate(tmp_path):
    path = tmp_path / "vfr.mkv"
    times_ms = [0, 40, 80, 200, 240, 250, 260, 400]  # irregular presentation times
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=Fraction(25))
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        stream.time_base = stream.codec_context.time_base = Fraction(1, 1000)
        for i, t in enumerate(times_ms):
            frame = av.VideoFrame.from_ndarray(np.full((48, 64, 3), 10 + 12 * i, np.uint8), format="rgb24")
            frame.pts, frame.time_base = t, Fraction(1, 1000)
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
    with av.open(str(path)) as container:
        average = float(container.streams.video[0].average_rate)
    clip = read_clip(path)
    assert len(clip) == len(times_ms) and frame_numbers(clip) == list(range(len(times_ms)))
    assert clip.fps == average


def test_sampler_windows_strides_and_short_clips():
    assert FrameSampler(4).indices(10) == [3, 4, 5, 6]
    assert FrameSampler(4, start="begin").indices(10) == [0, 1, 2, 3]
    assert FrameSampler(3, stride=2, start=1).indices(10) == [1, 3, 5]
    assert FrameSampler(None, stride=3).indices(7) == [0, 3, 6]
    assert FrameSampler(5).indices(3) == [0, 1, 2, 2, 2]  # documented rule: the last frame repeated
    with pytest.raises(VideoError, match="has 3 frames; the sampler needs 5"):
        FrameSampler(5, short="error").indices(3, "short.avi")
    with pytest.raises(ValueError, match="short must be"):
        FrameSampler(4, short="loop")


def test_sampled_clip_is_the_centre_window_at_the_stride_rate(tmp_path):
    path = write_video(tmp_path / "v.avi", moving_shapes(20, 48, 64))
    clip = read_clip(path, FrameSampler(frames=4, stride=2))
    assert frame_numbers(clip) == [6, 8, 10, 12] and clip.fps == 12.5
    begin = read_clip(path, FrameSampler(frames=30, start="begin"))
    assert frame_numbers(begin) == list(range(20)) + [19] * 10
    with pytest.raises(VideoError, match="v.avi: has 20 frames"):
        read_clip(path, FrameSampler(frames=30, short="error"))


def test_bad_videos_fail_with_a_message_naming_the_file(tmp_path):
    empty = tmp_path / "empty.avi"
    empty.write_bytes(b"")
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"RIFF" + bytes(range(256)) * 8)
    zero = tmp_path / "zero.avi"
    with av.open(str(zero), "w") as container:  # a header and a video stream, no frames
        stream = container.add_stream("mpeg4", rate=25)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        container.start_encoding()
    for path, message in [
        (empty, "empty file"),
        (junk, "not a video FFmpeg can read"),
        (zero, "no video frames could be decoded"),
        (tmp_path / "absent.avi", "cannot read"),
    ]:
        with pytest.raises(VideoError) as excinfo:
            read_clip(path, FrameSampler(8))
        assert str(path) in str(excinfo.value) and message in str(excinfo.value)


def test_split_files_parse_with_crlf_and_one_based_class_index(tmp_path):
    labels = write_ucf101_tree(tmp_path, frames=6, height=48, width=64)
    lists = tmp_path / "ucfTrainTestlist"
    assert b"\r\n" in (lists / "classInd.txt").read_bytes()
    classes = read_class_index(lists / "classInd.txt")
    assert classes == ["ApplyEyeMakeup", "Basketball", "HandstandPushups"]
    assert read_split(lists / "testlist01.txt", classes) == labels
    assert read_split(lists / "trainlist01.txt", classes)["Basketball/v_Basketball_g08_c01.avi"] == 1

    bad = tmp_path / "bad.txt"
    bad.write_bytes(b"Basketball/v_Basketball_g08_c01.avi 3\r\n")  # 3 is HandstandPushups, 1-based
    with pytest.raises(SplitFileError, match=r"bad.txt:1: index 3 is 'HandstandPushups'"):
        read_split(bad, classes)
    zero_based = tmp_path / "classInd0.txt"
    zero_based.write_text("0 ApplyEyeMakeup\n1 Basketball\n")
    with pytest.raises(SplitFileError, match="1-based"):
        read_class_index(zero_based)


def test_ucf101_dataset_samples_labels_and_missing_videos(tmp_path):
    labels = write_ucf101_tree(tmp_path, frames=6, height=48, width=64)
    data = UCF101(tmp_path, frames=4)
    samples = data.samples()
    assert [s.id for s in samples] == sorted(labels)
    assert data.targets("action", samples) == {v: {"label": lab} for v, lab in labels.items()}
    assert data.load(samples[0]).shape == (4, 48, 64, 3)
    with pytest.raises(KeyError):
        data.targets("detection", samples)

    (tmp_path / "UCF-101" / "Basketball" / "v_Basketball_g01_c01.avi").unlink()
    with pytest.raises(DatasetUnavailable, match="1 of the 3 videos of testlist01.txt.*missing_videos=skip"):
        UCF101(tmp_path).samples()
    skipping = UCF101(tmp_path, missing_videos="skip")
    assert len(skipping.samples()) == 2 and "Basketball/v_Basketball_g01_c01.avi" in skipping.problems()[0]
    with pytest.raises(DatasetUnavailable, match="python -m bench fetch ucf101"):
        UCF101(tmp_path / "nowhere").samples()
    with pytest.raises(ValueError, match="split must be 1, 2 or 3"):
        UCF101(tmp_path, split=4)


def test_video_folder_lists_videos_and_odd_sizes_are_kept(tmp_path):
    write_video(tmp_path / "a" / "odd.avi", moving_shapes(5, 47, 63), codec="ffv1", b_frames=0, pix_fmt="bgr0")
    write_video(tmp_path / "b.mkv", moving_shapes(5, 48, 64), codec="libx264", b_frames=0)
    (tmp_path / "notes.txt").write_text("not a video")
    data = VideoFolder(tmp_path, frames=None)
    samples = data.samples()
    assert [s.id for s in samples] == ["a/odd.avi", "b.mkv"]
    odd = data.load(samples[0])
    assert odd.shape == (5, 47, 63, 3)  # lossless FFV1: the exact pixels come back
    assert np.array_equal(np.asarray(odd), moving_shapes(5, 47, 63))
    with pytest.raises(VideoError):
        data.load(Sample("notes.txt", str(tmp_path / "notes.txt")))
