"""Shots: segment each stroke in a stream, fit it whole (thesis §6.2) and classify it (DESIGN §4 Shots).

Conventions (see :mod:`engine.types`): keypoints are ``[17, 2]`` COCO keypoints in original-frame
pixels (x right, y down); ``dx``/``dy`` of the thesis fit are frame-normalised (divided by the
frame width / height, :func:`engine.analytics.wrist_offsets`); times are seconds on the source's
PTS timeline. Motion and classifier features are measured in *torso lengths* (distance from the
shoulder midpoint to the hip midpoint, in pixels), so they do not depend on how large the batter
is in the frame or on the frame's aspect ratio.

Modules, each usable on its own:

* :mod:`~engine.shots.segmenter`: :class:`ShotSegmenter`, online hysteresis on the speed of the
  hands relative to the shoulders -> :class:`ShotSegment` (start / end times, frames, the motion
  samples).
* :mod:`~engine.shots.handedness`: :func:`infer_handedness` (the bat side of the backlift, with
  a confidence), :func:`mirror_keypoints`: a left-hander is mirrored (x -> W - x, left <-> right
  labels swapped) so that every feature
  describes the *front* arm in a right-hander's frame (the thesis analyses ``left_wrist`` /
  ``left_shoulder`` of a right-hander).
* :mod:`~engine.shots.features`: :func:`shot_features` / :func:`pose_sequence` /
  :func:`frame_channels`, the classifier's inputs of one segment or frame (feature set
  ``pose_seq_v2``: limb-length-free segment directions, NaN for missing keypoints), and
  :func:`consistent_runs` (where a sequence jumps to another person).
* :mod:`~engine.shots.augment`: run-time-like augmentation of training sequences.
* :mod:`~engine.shots.classifier`: :class:`ShotClassifier`, numpy inference of the packaged
  model (``engine/data/shot_classifier_v2.json``, produced by ``python -m engine.tools.train_shots``:
  extremely randomised trees, a temporal CNN, a frame MLP or the mean of two of them, whichever
  won grouped CV), temperature-calibrated;
  predictions are averaged over the sequence and its mirror image, so the class does not depend
  on the (inferred) handedness.
* :mod:`~engine.shots.classify`: ``batsight classify`` for keypoint files made elsewhere.
* :mod:`~engine.shots.analyzer`: :class:`ShotAnalyzer`, one per source; ties the above together
  and returns a :class:`ShotResult` per shot; :meth:`engine.messages.Shot.from_result` turns it into the ``shot/``
  wire payload.
* :mod:`~engine.shots.mediapipe`: :func:`mediapipe33_to_coco17` for the MediaPipe-33 training data.

Only numpy is used at run time. Nothing here is thread-safe: one :class:`ShotAnalyzer` per
source, called from that source's analytics thread.
"""

from engine.shots.analyzer import ShotAnalyzer, ShotResult
from engine.shots.classifier import SHOT_CLASSES, ShotClassifier, ShotPrediction, softmax
from engine.shots.features import (
    FEATURE_SET,
    consistent_runs,
    feature_names,
    frame_channels,
    pose_channels,
    pose_sequence,
    shot_features,
)
from engine.shots.handedness import (
    FLIP_INDEX,
    HandednessEstimate,
    backlift_side,
    infer_handedness,
    mirror_keypoints,
    mirrored_name,
)
from engine.shots.mediapipe import MEDIAPIPE33_TO_COCO17, mediapipe33_to_coco17
from engine.shots.segmenter import ShotSegment, ShotSegmenter

__all__ = [
    "FEATURE_SET",
    "FLIP_INDEX",
    "HandednessEstimate",
    "MEDIAPIPE33_TO_COCO17",
    "SHOT_CLASSES",
    "ShotAnalyzer",
    "ShotClassifier",
    "ShotPrediction",
    "ShotResult",
    "ShotSegment",
    "ShotSegmenter",
    "backlift_side",
    "consistent_runs",
    "feature_names",
    "frame_channels",
    "infer_handedness",
    "mediapipe33_to_coco17",
    "mirror_keypoints",
    "mirrored_name",
    "pose_channels",
    "pose_sequence",
    "shot_features",
    "softmax",
]
