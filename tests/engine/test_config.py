"""Config loading: defaults file agrees with the models, bad values refused with dotted paths."""

from __future__ import annotations

import pytest
import yaml

from engine.config import Config, load_config
from engine.errors import ConfigError
from tests.conftest import REPO_ROOT

DEFAULT_YAML = REPO_ROOT / "configs" / "default.yaml"


def _keys(model: dict, prefix: str = "") -> set[str]:
    out = set()
    for key, value in model.items():
        path = f"{prefix}{key}"
        out.add(path)
        if isinstance(value, dict):
            out |= _keys(value, path + ".")
    return out


def test_default_yaml_documents_every_key_with_the_model_defaults():
    from_file = load_config(DEFAULT_YAML)
    assert from_file == Config()
    raw = yaml.safe_load(DEFAULT_YAML.read_text())
    assert _keys(raw) == _keys(Config().model_dump(mode="json"))
    # every key line carries a comment (unit / meaning)
    for line in DEFAULT_YAML.read_text().splitlines():
        stripped = line.strip()
        if stripped and not stripped.startswith(("#", "-")) and ":" in stripped:
            key = stripped.split(":")[0]
            if key in {"source", "model", "batch", "batter", "analytics", "publisher", "sinks", "sources"}:
                continue
            assert "#" in line, f"no comment on {line!r}"


@pytest.mark.parametrize(
    ("overrides", "fragment"),
    [
        (["batch.max_batch=0"], "batch.max_batch"),
        (["model.imgsz=100"], "model.imgsz: must be a multiple of 32"),
        (["model.device=tpu"], "model.device"),
        (["analytics.wrist=kp9"], "analytics.wrist: must be a COCO keypoint name"),
        (["analytics.windw_s=2"], "analytics.windw_s: unknown key"),
        (["publisher.health_period_s=-1"], "publisher.health_period_s"),
        (["source.stall_after_s=0"], "source.stall_after_s"),
        (["source.stall_after_s=-1"], "source.stall_after_s"),
        (["analytics.shoulder=left_wrist"], "analytics.wrist and analytics.shoulder must differ"),
        (["nosuchsection.x=1"], "nosuchsection: unknown key"),
        (["sink_error_policies={jsonll: skip}"], "sink_error_policies: unknown sink 'jsonll' (available: console,"),
        (["=3"], "--set '=3': empty key"),
        (["batch..max_batch=3"], "empty key or key part"),
    ],
)
def test_bad_values_are_refused_with_dotted_path(overrides, fragment):
    with pytest.raises(ConfigError) as info:
        load_config(None, overrides)
    assert fragment in str(info.value)
    assert "(got {" not in str(info.value)  # never the whole input mapping
    assert isinstance(info.value, ValueError)


def test_set_overrides_parse_yaml_scalars():
    config = load_config(None, ["batch.max_batch=4", "model.half=false", "analytics.window_s=1.5", "sinks=[jsonl:x]"])
    assert config.batch.max_batch == 4
    assert config.model.half is False
    assert config.analytics.window_s == 1.5
    assert config.sinks == ["jsonl:x"]


def test_stall_after_s_defaults_to_one_second_and_may_exceed_the_read_timeout():
    assert Config().source.stall_after_s == 1.0
    config = load_config(None, ["source.stall_after_s=8", "source.read_timeout_s=2"])  # accepted: capped at 2 s
    assert (config.source.stall_after_s, config.source.read_timeout_s) == (8.0, 2.0)


def test_unreadable_and_non_mapping_files(tmp_path):
    with pytest.raises(ConfigError, match="cannot read config file"):
        load_config(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("- a\n- b\n")
    with pytest.raises(ConfigError, match="mapping at the top level"):
        load_config(bad)
    broken = tmp_path / "broken.yaml"
    broken.write_text("batch: {max_batch: [\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(broken)
    with pytest.raises(ConfigError, match="key=value"):
        load_config(None, ["batch.max_batch"])


@pytest.mark.parametrize("preset", ["nets.yaml", "broadcast.yaml", "offline.yaml", "cluster.yaml"])
def test_presets_load_and_differ_from_the_defaults_only_where_they_say(preset):
    path = REPO_ROOT / "configs" / preset
    config = load_config(path)
    raw = yaml.safe_load(path.read_text())
    defaults = Config().model_dump(mode="json")
    dumped = config.model_dump(mode="json")
    for section, values in raw.items():
        if isinstance(values, dict):
            for key, value in values.items():
                assert dumped[section][key] == value
        else:
            assert dumped[section] == values
    untouched = {k for k in defaults if k not in raw}
    assert all(dumped[k] == defaults[k] for k in untouched)


# -- model backend options: declared by each backend, written flat under model. ------------------


def test_backend_keys_get_their_defaults_and_stay_flat():
    from engine.models.keypointrcnn_pose import KeypointRCNNOptions
    from engine.models.ultralytics_pose import UltralyticsOptions

    model = Config().model
    declared = {**KeypointRCNNOptions().model_dump(), **UltralyticsOptions().model_dump()}
    assert model.model_extra == declared  # only what a backend declares
    assert set(type(model).model_fields) == {"name", "weights", "weights_dir", "imgsz", "conf", "iou", "device", "half"}
    config = load_config(None, ["model.keypoint_min_size=480", "model.keypoint_mode=full"])
    options = KeypointRCNNOptions.from_model_config(config.model)
    assert (options.keypoint_min_size, options.keypoint_mode, options.keypoint_max_size) == (480, "full", 1333)
    assert config.model.keypoint_min_size == 480  # the flat attribute, as before
    ultra = UltralyticsOptions.from_model_config(load_config(None, ["model.backend=onnx"]).model)
    assert (ultra.backend, ultra.export_dir, ultra.export_batch) == ("onnx", None, 8)
    with pytest.raises(ConfigError, match="model.backend"):
        load_config(None, ["model.backend=tflite"])


@pytest.mark.parametrize("name", ["ultralytics", "keypointrcnn"])
@pytest.mark.parametrize(
    ("overrides", "fragment"),
    [
        (["model.keypoint_mode=up"], "model.keypoint_mode: Input should be 'topdown', 'crop' or 'full' (got 'up')"),
        (["model.keypoint_min_size=8"], "model.keypoint_min_size: Input should be greater than or equal to 32"),
        (["model.keypoint_weigths=x.pth"], "model.keypoint_weigths: unknown key"),
        (
            ["model.imgsz=100", "model.keypoint_max_size=1"],
            "model.imgsz: must be a multiple of 32, got 100; model.keypoint_max_size: Input should be",
        ),
    ],
)
def test_backend_keys_are_checked_whichever_backend_is_selected(name, overrides, fragment):
    with pytest.raises(ConfigError) as info:
        load_config(None, [f"model.name={name}", *overrides])
    assert fragment in str(info.value)
    assert "\n" not in str(info.value)


def test_backend_options_name_the_dotted_key_when_given_an_unchecked_config():
    from engine.config import ModelConfig
    from engine.models.keypointrcnn_pose import KeypointRCNNOptions

    unchecked = ModelConfig.model_construct(keypoint_mode="crops")  # as built without the backend installed
    expected = r"^invalid config: model\.keypoint_mode: Input should be 'topdown', 'crop' or 'full'"
    with pytest.raises(ConfigError, match=expected):
        KeypointRCNNOptions.from_model_config(unchecked)


def test_a_model_config_instance_is_accepted_as_it_is():
    from engine.config import ModelConfig

    model = ModelConfig(device="cpu", keypoint_mode="full")
    assert Config(model=model).model is model
    assert model.model_dump()["keypoint_mode"] == "full" and model.model_dump()["keypoint_weights"] == "COCO_V1"


@pytest.mark.parametrize(
    ("text", "line", "column", "problem"),
    [
        # the second ':' of line 3 (1-based column 15) starts a mapping where none may be
        ("progress: true\nbatch:\n  max_batch: 4: 5\n", 3, 15, "mapping values are not allowed here"),
        # the flow sequence opened on line 2 is still open at line 3's ':' (column 2)
        ("batch:\n  - [1, 2\nb: 3\n", 3, 2,
         "expected ',' or ']', but got ':' (while parsing a flow sequence from line 2, column 5)"),
        # BEL (0x07) is the 4th character of line 2
        ("progress: true\nab:\x07\n", 2, 4, "character #x0007: special characters are not allowed"),
    ],
)
def test_a_yaml_syntax_error_names_the_file_line_and_column(tmp_path, text, line, column, problem):
    broken = tmp_path / "broken.yaml"
    broken.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_config(broken)
    assert str(info.value) == f"config file {broken}, line {line}, column {column}: not valid YAML: {problem}"
