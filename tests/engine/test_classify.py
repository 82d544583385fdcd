"""``batsight classify`` as a demanding user runs it: bad files, folders, options, output.

Every input is made here with numpy in ``tmp_path`` (one shared CricShot10 file is read in place).
A good file must always print its row; each bad path or file gets exactly one ``batsight: error:``
line naming it, and the exit status is 1 when anything failed (README "Shot classifier").
"""

from __future__ import annotations

import json
import math
import os
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from engine.cli import main
from engine.shots import ShotClassifier
from engine.types import COCO_KEYPOINT_NAMES
from tests.conftest import shared_file
from tests.helpers import subprocess_env

#: A standing batter, COCO order, pixels relative to the hips' midpoint (x right, y down).
_BODY = {
    "nose": (0, -160), "left_eye": (4, -166), "right_eye": (-4, -166), "left_ear": (8, -162),
    "right_ear": (-8, -162), "left_shoulder": (22, -120), "right_shoulder": (-22, -120),
    "left_elbow": (30, -70), "right_elbow": (-30, -70), "left_wrist": (20, -30), "right_wrist": (-10, -28),
    "left_hip": (16, 0), "right_hip": (-16, 0), "left_knee": (30, 60), "right_knee": (-25, 60),
    "left_ankle": (40, 120), "right_ankle": (-30, 118),
}
#: MediaPipe Pose landmark of each COCO keypoint (MediaPipe's published landmark list).
_MP = {"nose": 0, "left_eye": 2, "right_eye": 5, "left_ear": 7, "right_ear": 8, "left_shoulder": 11,
       "right_shoulder": 12, "left_elbow": 13, "right_elbow": 14, "left_wrist": 15, "right_wrist": 16,
       "left_hip": 23, "right_hip": 24, "left_knee": 25, "right_knee": 26, "left_ankle": 27, "right_ankle": 28}


def _pose_px(n: int = 12) -> np.ndarray:
    """float64 ``[n, 17, 2]`` pixels in a 1920x1080 frame: the hands swing up and round."""
    kp = np.tile(np.array([_BODY[k] for k in COCO_KEYPOINT_NAMES], np.float64), (n, 1, 1)) + [900.0, 700.0]
    a = np.linspace(0, np.pi, n)
    for name in ("left_wrist", "right_wrist"):
        kp[:, COCO_KEYPOINT_NAMES.index(name)] += np.stack([90 * np.sin(a), -80 * np.sin(a)], axis=1)
    return kp


def _run(capsys, *args: str) -> tuple[int, list[dict], list[str]]:
    """``main(["classify", ...])`` -> (status, rows on stdout, error lines on stderr)."""
    rc = main(["classify", *map(str, args)])
    out, err = capsys.readouterr()
    rows = [json.loads(line, parse_constant=lambda c: pytest.fail(f"not JSON: {c}")) for line in out.splitlines()]
    assert "Traceback" not in err
    return rc, rows, [line for line in err.splitlines() if line.strip()]


def _check_row(row: dict) -> None:
    p = row["probabilities"]
    assert set(p) == {"pull", "cover_drive", "other"}
    assert all(math.isfinite(v) and 0.0 <= v <= 1.0 for v in p.values())
    assert sum(p.values()) == pytest.approx(1.0, abs=1e-9)
    assert row["confidence"] == p[row["label"]]


def test_mixed_folder_prints_every_good_file_and_one_line_per_bad_path(tmp_path, capsys):
    kp = _pose_px()
    d = tmp_path / "export"
    (d / "sub").mkdir(parents=True)
    (d / ".ipynb_checkpoints").mkdir()
    np.save(d / "a.npy", kp)
    np.save(d / "b.npy", np.zeros((12, 98)))  # bad shape
    np.save(d / "sub" / "c.npy", kp[::-1])
    (d / "notes.txt").write_text("not a sequence")  # not .npy: not read from a folder
    (d / ".ipynb_checkpoints" / "a-checkpoint.npy").write_text("junk")  # hidden: skipped
    with (d / "D.NPY").open("wb") as fh:  # upper-case suffix still counts
        np.save(fh, kp[:, ::-1])
    (tmp_path / "empty").mkdir()
    rc, rows, errors = _run(capsys, d, tmp_path / "missing.npy", tmp_path / "empty", "--layout", "coco17")
    assert rc == 1
    assert [r["path"] for r in rows] == [str(d / "D.NPY"), str(d / "a.npy"), str(d / "sub" / "c.npy")]
    for row in rows:
        _check_row(row)
    assert len(errors) == 3, errors
    assert any(str(d / "b.npy") in e and "(T, 17, 2|3)" in e for e in errors)
    assert any(str(tmp_path / "missing.npy") in e and "no such file" in e for e in errors)
    assert any(str(tmp_path / "empty") in e and "no .npy files" in e for e in errors)


def _write(path: Path, content) -> None:
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        np.save(path, content, allow_pickle=True)


_GOOD_MP = np.tile(np.linspace(0.2, 0.8, 99), (10, 1))


def _truncated() -> bytes:
    import io

    buf = io.BytesIO()
    np.save(buf, _GOOD_MP)
    return buf.getvalue()[:-200]


def _npz() -> bytes:
    import io

    buf = io.BytesIO()
    np.savez(buf, a=_GOOD_MP)
    return buf.getvalue()


@pytest.mark.filterwarnings("error")  # numpy's overflow / invalid-value warnings are not output
@pytest.mark.parametrize(("name", "content", "layout", "fragment"), [
    ("empty.npy", b"", "mediapipe33", "not a NumPy .npy file"),
    ("text.npy", b"x,y\n1,2\n", "mediapipe33", "not a NumPy .npy file"),
    ("raw.npy", pickle.dumps(_GOOD_MP), "mediapipe33", "not a NumPy .npy file"),
    ("archive.npz", _npz(), "mediapipe33", ".npz archive"),
    ("cut.npy", _truncated(), "mediapipe33", "truncated"),
    ("object.npy", np.array([{"x": 1}], dtype=object), "mediapipe33", "holds object values"),
    ("bool.npy", _GOOD_MP > 0.5, "mediapipe33", "holds bool values"),
    ("complex.npy", _GOOD_MP.astype(np.complex128), "mediapipe33", "holds complex128 values"),
    ("record.npy", np.zeros(3, dtype=[("x", "f8"), ("y", "f8")]), "mediapipe33", "values; only real numbers"),
    ("text_array.npy", np.array(["a", "b"]), "mediapipe33", "holds <U1 values"),
    ("zero_d.npy", np.float64(1.0), "mediapipe33", "shape ()"),
    ("one_d.npy", _GOOD_MP[0], "mediapipe33", "shape (99,)"),
    ("t98.npy", _GOOD_MP[:, :98], "mediapipe33", "shape (10, 98)"),
    ("coco_as_mp.npy", np.ones((10, 17, 2)), "mediapipe33", "give --layout coco17"),
    ("mp_as_coco.npy", _GOOD_MP, "coco17", "give --layout mediapipe33"),
    ("c4.npy", np.ones((10, 17, 4)), "coco17", "shape (10, 17, 4)"),
    ("t0.npy", _GOOD_MP[:0], "mediapipe33", "no frames"),
    ("t1.npy", _GOOD_MP[:1], "mediapipe33", "fewer than 2 of its 1 frames"),
    ("all_nan.npy", np.full((10, 99), np.nan), "mediapipe33", "not classified"),
    ("all_inf.npy", np.full((10, 99), np.inf), "mediapipe33", "not classified"),
    ("xyz_as_conf.npy", np.concatenate([np.ones((10, 17, 2)), np.full((10, 17, 1), -0.2)], 2), "coco17",
     "confidence in [0, 1]"),
])
def test_bad_file_gets_one_error_line_and_status_1(tmp_path, capsys, name, content, layout, fragment):
    path = tmp_path / name
    _write(path, content)
    rc, rows, errors = _run(capsys, path, "--layout", layout, "--aspect", "4:3")
    assert (rc, rows, len(errors)) == (1, [], 1), errors
    assert errors[0].startswith(f"batsight: error: {path}: "), errors
    assert errors[0].count(str(path)) == 1 and fragment in errors[0], errors


@pytest.mark.parametrize(("text", "expected"), [
    ("4:3", 4 / 3), ("16:9", 16 / 9), (" 16 : 9 ", 16 / 9), ("1.333", 1.333), ("1:1", 1.0),
    ("0:3", None), ("-4:3", None), ("abc", None), ("4:0", None), ("4:3:2", None), ("", None),
    ("inf", None), ("1e400", None), ("nan", None), ("4:inf", None),
])
def test_aspect_forms(tmp_path, capsys, text, expected):
    path = tmp_path / "a.npy"
    kp = _pose_px() / [1920.0, 1080.0]  # normalised to a 16:9 frame
    np.save(path, kp)
    if expected is None:
        with pytest.raises(SystemExit) as exc:
            main(["classify", str(path), "--layout", "coco17", f"--aspect={text}"])
        assert exc.value.code == 2
        assert "--aspect" in capsys.readouterr().err
        return
    rc, rows, _ = _run(capsys, path, "--layout", "coco17", f"--aspect={text}")
    assert rc == 0
    kp[..., 0] *= expected
    want = ShotClassifier.load().predict_keypoints(kp)
    assert rows[0]["probabilities"] == pytest.approx(want.probabilities, abs=1e-12)


@pytest.mark.parametrize("value", ["1.5", "-0.1", "nan", "x"])
def test_min_confidence_must_be_a_probability(tmp_path, capsys, value):
    np.save(tmp_path / "a.npy", _pose_px())
    with pytest.raises(SystemExit) as exc:
        main(["classify", str(tmp_path / "a.npy"), "--layout", "coco17", f"--min-confidence={value}"])
    assert exc.value.code == 2
    assert "--min-confidence" in capsys.readouterr().err


def test_normalised_and_pixel_coordinates_give_the_same_shot(tmp_path, capsys):
    """Normalised with ``--aspect 16:9`` == the same pose in 1920x1080 pixels; a missing or stray aspect is refused."""
    px = _pose_px()
    np.save(tmp_path / "px.npy", px)
    np.save(tmp_path / "norm.npy", px / [1920.0, 1080.0])
    _, (row_px,), _ = _run(capsys, tmp_path / "px.npy", "--layout", "coco17")
    _, (row_n,), _ = _run(capsys, tmp_path / "norm.npy", "--layout", "coco17", "--aspect", "16:9")
    assert row_n["probabilities"] == pytest.approx(row_px["probabilities"], abs=1e-9)
    rc, rows, errors = _run(capsys, tmp_path / "norm.npy", "--layout", "coco17")
    assert (rc, rows) == (1, []) and "give --aspect" in errors[0]
    rc, rows, errors = _run(capsys, tmp_path / "px.npy", "--layout", "coco17", "--aspect", "4:3")
    assert (rc, rows) == (1, []) and "look like pixels" in errors[0]


def test_cricshot10_mediapipe_file_equals_its_keypoints_in_pixels(tmp_path, capsys):
    """A shared CricShot10 file (4:3) == the same 17 landmarks picked here and scaled to 640x480 pixels."""
    src = shared_file("keypoints/cricshot10_mediapipe33/cover/cover_0000.npy")
    lm = np.load(src).reshape(-1, 33, 3)
    px = lm[:, [_MP[k] for k in COCO_KEYPOINT_NAMES], :2] * [640.0, 480.0]
    np.save(tmp_path / "px.npy", px)
    _, (row_mp,), _ = _run(capsys, src, "--aspect", "4:3")
    _, (row_px,), _ = _run(capsys, tmp_path / "px.npy", "--layout", "coco17")
    assert row_mp["probabilities"] == pytest.approx(row_px["probabilities"], abs=1e-9)
    assert row_mp["label"] == row_px["label"] and row_mp["frames"] == lm.shape[0]
    _check_row(row_mp)
    p = row_mp["probabilities"]
    top = max(p, key=p.get)  # cover_drive with the model of this commit
    _, (row,), _ = _run(capsys, src, "--aspect", "4:3", "--set", f"shots.min_confidence={p[top] + 1e-6}")
    assert (row["label"], row["abstained"], row["confidence"]) == ("other", top != "other", p["other"])
    assert row["probabilities"] == p


def test_nan_confidence_is_a_missing_keypoint(tmp_path, capsys):
    kp = _pose_px()
    conf = np.full(kp.shape[:2] + (1,), 0.9)
    wrists = [COCO_KEYPOINT_NAMES.index("left_wrist"), COCO_KEYPOINT_NAMES.index("right_wrist")]
    conf[4:9, wrists] = np.nan
    np.save(tmp_path / "nan.npy", np.concatenate([kp, conf], axis=2))
    conf[4:9, wrists] = 0.0
    np.save(tmp_path / "zero.npy", np.concatenate([kp, conf], axis=2))
    conf[4:9, wrists] = 0.9
    np.save(tmp_path / "seen.npy", np.concatenate([kp, conf], axis=2))
    rc, rows, _ = _run(capsys, tmp_path / "nan.npy", tmp_path / "zero.npy", tmp_path / "seen.npy", "--layout", "coco17")
    assert rc == 0
    assert rows[0]["probabilities"] == pytest.approx(rows[1]["probabilities"], abs=1e-12)
    assert rows[0]["probabilities"] != pytest.approx(rows[2]["probabilities"], abs=1e-6)  # the wrists matter


def test_each_file_is_classified_once(tmp_path, capsys):
    d = tmp_path / "d"
    d.mkdir()
    np.save(d / "a.npy", _pose_px())
    (tmp_path / "link.npy").symlink_to(d / "a.npy")
    rc, rows, _ = _run(capsys, d / "a.npy", d, f"{d}/./a.npy", tmp_path / "link.npy", "--layout", "coco17")
    assert rc == 0
    assert [r["path"] for r in rows] == [str(d / "a.npy")]


def test_broken_link_pipe_and_non_utf8_names(tmp_path):
    """Real streams (a subprocess): undecodable names neither crash stderr nor break the JSON on stdout.

    A pipe named ``*.npy`` in the folder is skipped (the old walk opened it and hung: the timeout).
    """
    d = os.fsencode(tmp_path)
    np.save(os.fsdecode(d + b"/good\xff.npy"), _pose_px())
    with open(d + b"/bad\xfe.npy", "wb") as fh:
        fh.write(b"junk")
    os.symlink(b"/nonexistent.npy", d + b"/gone.npy")
    os.mkfifo(d + b"/pipe.npy")  # no writer: opening it would block, so a folder walk must skip it
    proc = subprocess.run(
        [sys.executable, "-m", "engine.cli", "classify", str(tmp_path), "--layout", "coco17"],
        capture_output=True, timeout=60, env=subprocess_env(),
    )
    assert proc.returncode == 1
    (row,) = [json.loads(line) for line in proc.stdout.splitlines()]
    assert os.fsencode(row["path"]) == d + b"/good\xff.npy"
    errors = proc.stderr.decode("ascii").splitlines()  # undecodable bytes are escaped
    assert len(errors) == 2 and "Traceback" not in proc.stderr.decode("ascii")
    assert any("bad" in e and ".npy: not a NumPy .npy file" in e for e in errors), errors
    assert any("gone.npy: broken symbolic link" in e for e in errors), errors


def test_closed_stdout_stops_quietly(tmp_path):
    """``batsight classify ... | head -0``: the reader has gone before the first row; no traceback."""
    np.save(tmp_path / "a.npy", _pose_px())
    proc = subprocess.Popen(
        [sys.executable, "-m", "engine.cli", "classify", str(tmp_path / "a.npy"), "--layout", "coco17"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=subprocess_env(),
    )
    proc.stdout.close()  # no reader left: the first write gets EPIPE
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 1
    assert b"Traceback" not in err and b"BrokenPipe" not in err, err


def test_config_thresholds_apply_as_in_run(tmp_path, capsys):
    """``--config`` / ``--set`` give shots.min_confidence and batter.min_keypoint_conf as ``run`` reads them."""
    kp = _pose_px()
    wrists = [COCO_KEYPOINT_NAMES.index("left_wrist"), COCO_KEYPOINT_NAMES.index("right_wrist")]
    conf = np.full(kp.shape[:2] + (1,), 0.9)
    conf[:, wrists] = 0.5
    np.save(tmp_path / "half.npy", np.concatenate([kp, conf], axis=2))
    conf[:, wrists] = 0.0
    np.save(tmp_path / "none.npy", np.concatenate([kp, conf], axis=2))
    (tmp_path / "c.yaml").write_text("shots:\n  min_confidence: 1.0\nbatter:\n  min_keypoint_conf: 0.6\n")
    _, (half, none), _ = _run(capsys, tmp_path / "half.npy", tmp_path / "none.npy", "--layout", "coco17",
                              "--config", tmp_path / "c.yaml")
    assert half["probabilities"] == pytest.approx(none["probabilities"], abs=1e-12)  # 0.5 < 0.6: wrists missing
    top = max(half["probabilities"], key=half["probabilities"].get)
    assert (half["label"], half["abstained"]) == ("other", top != "other")  # min_confidence 1: nothing else passes
    _, (seen,), _ = _run(capsys, tmp_path / "half.npy", "--layout", "coco17", "--set", "batter.min_keypoint_conf=0.4",
                         "--min-confidence", "0")
    assert seen["probabilities"] != pytest.approx(none["probabilities"], abs=1e-6)
    assert seen["label"] == max(seen["probabilities"], key=seen["probabilities"].get)
    rc = main(["classify", str(tmp_path / "half.npy"), "--set", "shots.min_confidence=2"])
    assert rc == 2 and "min_confidence" in capsys.readouterr().err
