"""Record schema, shards, manifest and random-access reading, incl. corruption handling."""
import json
import os
import pickle

import numpy as np
import pytest

from data_pipelines import records, tfrecord
from data_pipelines.records import RecordSource, ShardWriter, decode_example, encode_example
from data_pipelines.tfrecord import CorruptRecordError


def make_clip(i=0, *, encoding="jpeg", channels=2, frames=6, n=800, stems=2, seed=0):
    rng = np.random.default_rng(seed + i)
    clip = {"id": f"clip-{i}", "label": i % 3, "label_name": f"class{i % 3}",
            "audio": rng.uniform(-0.9, 0.9, (n, channels)).astype(np.float32), "sample_rate": 11025,
            "arrays": {"boxes": rng.random((frames, 2, 4)), "dist": np.array([[0.0, np.nan], [1.5, 0.0]]),
                       "scalar": np.float32(7.0)}}
    if frames:
        # smooth images so JPEG is near-lossless
        yy, xx = np.mgrid[0:24, 0:32]
        clip["video"] = np.stack([np.stack([(xx * 4 + t * 10) % 256, yy * 8, np.full_like(xx, 40 * t)], -1)
                                  for t in range(frames)]).astype(np.uint8)
        clip["fps"] = 15.0
        clip["video_encoding"] = encoding
    if stems:
        clip["sources"] = rng.uniform(-0.5, 0.5, (stems, n, channels))
        clip["sources_onscreen"] = [True] + [False] * (stems - 1)
    return clip


@pytest.mark.parametrize("encoding", ["jpeg", "png", "raw"])
@pytest.mark.parametrize("channels", [1, 2])
def test_round_trip(encoding, channels):
    clip = make_clip(3, encoding=encoding, channels=channels)
    d = decode_example(encode_example(clip))
    assert d["id"] == "clip-3" and d["label"] == 0 and d["label_name"] == "class0"
    assert d["sample_rate"] == 11025 and d["fps"] == 15.0 and d["video_encoding"] == encoding
    assert d["video"].dtype == np.uint8 and d["video"].shape == (6, 24, 32, 3)
    assert d["video_shape"] == (6, 24, 32) and d["encoded_frames"] is None
    if encoding == "jpeg":
        assert np.abs(d["video"].astype(int) - clip["video"]).mean() < 3
    else:
        np.testing.assert_array_equal(d["video"], clip["video"])
    assert d["audio"].dtype == np.float32 and d["audio"].shape == (800, channels)
    np.testing.assert_allclose(d["audio"], clip["audio"], atol=1 / 32767)
    assert d["sources"].shape == (2, 800, channels)
    np.testing.assert_allclose(d["sources"], clip["sources"], atol=1 / 32767)
    np.testing.assert_array_equal(d["sources_onscreen"], [True, False])
    np.testing.assert_allclose(d["arrays"]["boxes"], clip["arrays"]["boxes"], rtol=1e-6)
    assert np.isnan(d["arrays"]["dist"][0, 1]) and d["arrays"]["dist"][1, 0] == 1.5
    assert d["arrays"]["scalar"].shape == () and d["arrays"]["scalar"] == 7.0
    assert set(d) == {"id", "label", "label_name", "video", "fps", "audio", "sample_rate", "sources",
                      "sources_onscreen", "arrays", "video_encoding", "video_shape", "encoded_frames"}


def test_audio_only_mono_1d_and_defaults():
    d = decode_example(encode_example({"id": "a", "audio": np.zeros(100) + 0.25, "sample_rate": 8000}))
    assert d["video"] is None and d["video_shape"] == (0, 0, 0) and d["fps"] == 0.0
    assert d["audio"].shape == (100, 1) and d["label"] == -1 and d["label_name"] == ""
    assert d["sources"] is None and d["sources_onscreen"] is None and d["arrays"] == {}


def test_lazy_frames_and_reencode():
    clip = make_clip(1, encoding="png")
    d = decode_example(encode_example(clip), decode_video=False)
    assert d["video"] is None and len(d["encoded_frames"]) == 6
    sub = records.decode_frames(d["encoded_frames"], "png", d["video_shape"], [1, 4])
    np.testing.assert_array_equal(sub, clip["video"][[1, 4]])
    again = decode_example(encode_example(d))  # pre-encoded frames pass through
    np.testing.assert_array_equal(again["video"], clip["video"])


def test_stems_decoded_only_when_asked():
    data = encode_example(make_clip(2))
    full, lean = decode_example(data), decode_example(data, decode_sources=False)
    assert full["sources"] is not None and lean["sources"] is None
    np.testing.assert_array_equal(full["audio"], lean["audio"])


def test_clipping_stays_in_range():
    audio = np.array([[-3.0, 0.5], [2.0, -1.0], [1.0, 0.0]])
    d = decode_example(encode_example({"id": "c", "audio": audio, "sample_rate": 16000}))
    assert d["audio"].min() >= -1 and d["audio"].max() <= 1
    np.testing.assert_allclose(d["audio"][:, 0], [-1, 1, 1])


@pytest.mark.parametrize("bad, msg", [
    ({"audio": np.zeros((0, 2))}, "zero-length"),
    ({"audio": None}, "missing required key 'audio'"),
    ({"audio": np.full((4, 1), np.nan)}, "NaN"),
    ({"video": np.zeros((2, 8, 8, 3), np.float32)}, "uint8"),
    ({"video_encoding": "gif"}, "video_encoding"),
    ({"sources": np.zeros((1, 5, 2)), "sources_onscreen": [1]}, "source 0 has shape"),
    ({"sources": np.zeros((1, 800, 2))}, "1 sources but 2 onscreen flags"),
    ({"bogus": 1}, "unknown clip keys"),
    ({"fps": 0.0}, "fps"),
])
def test_encode_errors(bad, msg):
    clip = {**make_clip(0), **bad}
    with pytest.raises(ValueError, match=msg):
        encode_example(clip)


def test_decode_errors():
    from tensorflow_datasets.proto import tf_example_pb2
    good = tf_example_pb2.Example.FromString(encode_example(make_clip(0, frames=0, stems=0)))
    missing = tf_example_pb2.Example()
    missing.CopyFrom(good)
    del missing.features.feature["audio/pcm"]
    with pytest.raises(ValueError, match="missing required feature 'audio/pcm'"):
        decode_example(missing.SerializeToString())
    wrong = tf_example_pb2.Example()
    wrong.CopyFrom(good)
    wrong.features.feature["audio/num_samples"].int64_list.value[0] = 801
    with pytest.raises(ValueError, match="expected num_samples"):
        decode_example(wrong.SerializeToString())
    zero = tf_example_pb2.Example()
    zero.CopyFrom(good)
    zero.features.feature["audio/num_samples"].int64_list.value[0] = 0
    with pytest.raises(ValueError, match="zero-length audio"):
        decode_example(zero.SerializeToString())
    with pytest.raises(ValueError, match="not a tf.train.Example"):
        decode_example(b"\xff\xff garbage")


def write_set(tmp_path, n=7, num_shards=3, **kw):
    return records.write_examples(str(tmp_path), "toy", "train",
                                  [make_clip(i, frames=2, n=200) for i in range(n)], num_shards, **kw)


def test_shards_and_manifest(tmp_path):
    mpath = write_set(tmp_path)
    names = sorted(os.listdir(tmp_path))
    assert names == ["toy-train.manifest.json"] + [f"toy-train.tfrecord-0000{i}-of-00003" for i in range(3)]
    m = json.load(open(mpath))
    assert m["schema_version"] == records.SCHEMA_VERSION and m["num_examples"] == 7
    assert [s["num_records"] for s in m["shards"]] == [3, 2, 2]
    assert m["metadata"]["sample_rate"] == 11025 and m["metadata"]["fps"] == 15.0
    for s in m["shards"]:
        path = tmp_path / s["file"]
        assert s["offsets"] == tfrecord.scan_offsets(str(path)) and s["num_bytes"] == path.stat().st_size
    src = RecordSource(mpath)
    assert [decode_example(src[i])["id"] for i in range(7)] == [f"clip-{i}" for i in range(7)]


def test_target_bytes_rollover_and_rewrite(tmp_path):
    write_set(tmp_path, n=6, num_shards=None, target_shard_bytes=20_000)
    first = sorted(p for p in os.listdir(tmp_path) if ".tfrecord-" in p)
    assert len(first) > 1
    write_set(tmp_path, n=2, num_shards=1)  # replaces the old set, stale shards go
    assert sorted(os.listdir(tmp_path)) == ["toy-train.manifest.json", "toy-train.tfrecord-00000-of-00001"]
    assert len(RecordSource(str(tmp_path))) == 2


def test_interrupted_write_leaves_nothing(tmp_path):
    with pytest.raises(RuntimeError):
        with ShardWriter(str(tmp_path), "toy", "train", num_shards=2) as w:
            w.write(make_clip(0, frames=2, n=100))
            raise RuntimeError("interrupted")
    assert os.listdir(tmp_path) == []


def test_random_access_equals_sequential_scan(tmp_path):
    write_set(tmp_path, n=9, num_shards=4)
    seq = [r for f in sorted(tmp_path.glob("*.tfrecord-*")) for r in tfrecord.iter_records(str(f))]
    for path in [str(tmp_path), str(tmp_path / "toy-train"), str(tmp_path / "toy-train.manifest.json"),
                 str(tmp_path / "toy-train.tfrecord-*")]:
        src = RecordSource(path)
        assert len(src) == 9
        for i in np.random.default_rng(0).permutation(9):
            assert src[int(i)] == seq[i]
        assert src[-1] == seq[-1]
    with pytest.raises(IndexError):
        src[9]
    # a shard without its manifest is indexed by scanning its headers
    os.remove(tmp_path / "toy-train.manifest.json")
    src = RecordSource(str(tmp_path / "toy-train.tfrecord-00001-of-00004"))
    assert [src[i] for i in range(len(src))] == list(tfrecord.iter_records(str(tmp_path / "toy-train.tfrecord-00001-of-00004")))


def test_grain_compat_and_pickle(tmp_path):
    import grain
    write_set(tmp_path, n=5, num_shards=2)
    src = RecordSource(str(tmp_path))
    src[0]
    clone = pickle.loads(pickle.dumps(src))
    assert clone[3] == src[3] and "num_records=5" in repr(clone)
    ds = grain.MapDataset.source(src).map(decode_example)
    assert [d["id"] for d in ds] == [f"clip-{i}" for i in range(5)]
    # our framing is the standard one: grain's own sequential reader agrees
    shard = src.files[0]
    assert list(grain.experimental.TFRecordIterDataset(shard)) == list(tfrecord.iter_records(shard))


def test_corrupt_byte_detected_and_skipped(tmp_path):
    write_set(tmp_path, n=6, num_shards=2)
    src = RecordSource(str(tmp_path))
    want = [src[i] for i in range(6)]
    shard, offset = src.locate(1)
    with open(shard, "r+b") as f:  # flip one byte in the data of record 1
        f.seek(offset + 40)
        b = f.read(1)
        f.seek(offset + 40)
        f.write(bytes([b[0] ^ 0xFF]))
    src = RecordSource(str(tmp_path))
    with pytest.raises(CorruptRecordError, match=f"{shard} at byte {offset}: data CRC mismatch"):
        src[1]
    assert src[0] == want[0] and src[2] == want[2]
    lenient = RecordSource(str(tmp_path), skip_corrupt=True)
    assert lenient[1] == want[2] and lenient.num_skipped == 1
    assert lenient.corrupt == {(shard, offset)}
    assert isinstance(CorruptRecordError(shard, 0, "x"), ValueError)


def test_corrupt_length_and_truncation(tmp_path):
    write_set(tmp_path, n=4, num_shards=1)
    shard = str(tmp_path / "toy-train.tfrecord-00000-of-00001")
    offsets = tfrecord.scan_offsets(shard)
    size = os.path.getsize(shard)
    with open(shard, "r+b") as f:
        f.truncate(size - 10)
    src = RecordSource(str(tmp_path))
    with pytest.raises(CorruptRecordError, match=f"at byte {offsets[3]}: truncated data"):
        src[3]
    with pytest.raises(CorruptRecordError, match="truncated"):
        tfrecord.scan_offsets(shard)
    lenient = RecordSource(str(tmp_path), skip_corrupt=True)
    assert lenient[3] == src[0] and lenient.num_skipped == 1
    with open(shard, "r+b") as f:  # damage a length field
        f.seek(offsets[2] + 2)
        f.write(b"\x7f")
    with pytest.raises(CorruptRecordError, match=f"at byte {offsets[2]}: length CRC mismatch"):
        RecordSource(str(tmp_path))[2]


def test_missing_paths(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere.*data_pipelines.synthetic"):
        RecordSource(str(tmp_path / "nowhere"))
    with pytest.raises(FileNotFoundError, match="no records found"):
        RecordSource(str(tmp_path))  # empty directory
    write_set(tmp_path, n=2, num_shards=2)
    os.remove(tmp_path / "toy-train.tfrecord-00001-of-00002")
    with pytest.raises(FileNotFoundError, match="toy-train.tfrecord-00001-of-00002, which is missing"):
        RecordSource(str(tmp_path))


def test_parallel_encode_matches_serial_and_reports_items():
    clips = [make_clip(i, frames=2, n=100) for i in range(4)]
    serial = [encode_example(c) for c in clips]
    assert list(records.parallel_encode(encode_example, clips, 2)) == serial
    bad = clips[:2] + [{"id": "broken", "sample_rate": 1}]
    with pytest.raises(ValueError, match="broken.*missing required key 'audio'"):
        list(records.parallel_encode(encode_example, bad, 1))
    errors = []
    out = list(records.parallel_encode(encode_example, bad, 1, on_error=lambda item, msg: errors.append(msg)))
    assert out == serial[:2] and len(errors) == 1
