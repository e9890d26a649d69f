"""Tests of kerafine.config: the `kerafine fit` schema."""

import pytest
import yaml

from kerafine.config import EXAMPLE_CONFIG, FitConfig, load_config
from kerafine.errors import KerafineError


def _write(tmp_path, text, name="cfg.yaml"):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_example_config_is_valid_and_paths_are_relative_to_the_file(tmp_path):
    cfg = load_config(_write(tmp_path, EXAMPLE_CONFIG))
    assert cfg.data.kind == "server_metrics" and cfg.data.window == 32 and cfg.backbone.name == "lstm"
    assert cfg.data.cpu == tmp_path / "data" / "cpu.csv"
    assert cfg.output_dir == tmp_path / "runs" / "my-run" and cfg.output_dir.is_dir()
    assert cfg.schedule.learning_rate == "search"


def test_unknown_key_is_named(tmp_path):
    text = EXAMPLE_CONFIG.replace("  batch_size: 64", "  batch_sise: 64")
    with pytest.raises(KerafineError, match=r"field `schedule.batch_sise`: unknown key"):
        load_config(_write(tmp_path, text))


def test_wrong_type_is_named_with_the_value(tmp_path):
    text = EXAMPLE_CONFIG.replace("window: 32", "window: thirty")
    with pytest.raises(KerafineError, match=r"field `data.window`: Input should be a valid integer.*'thirty'"):
        load_config(_write(tmp_path, text))


def test_unknown_backbone_is_named_with_a_suggestion(tmp_path):
    text = EXAMPLE_CONFIG.replace("name: lstm", "name: lstn")
    with pytest.raises(KerafineError, match=r"field `backbone.name`: unknown backbone 'lstn'.*Did you mean \"lstm\""):
        load_config(_write(tmp_path, text))


def test_vision_backbone_is_explained(tmp_path):
    text = EXAMPLE_CONFIG.replace("name: lstm", "name: vgg16")
    with pytest.raises(KerafineError, match=r"backbone.name.*Vision backbones need images"):
        load_config(_write(tmp_path, text))


def test_backbone_must_fit_the_data_kind():
    raw = yaml.safe_load(EXAMPLE_CONFIG)
    raw["backbone"]["name"] = "tabular"
    with pytest.raises(Exception, match="does not fit data.kind 'server_metrics'"):
        FitConfig.model_validate(raw)


def test_unwritable_output_dir_is_named(tmp_path):
    # Below a regular file nothing can be created, even as root (chmod does not stop root).
    (tmp_path / "plain-file").write_text("x")
    text = EXAMPLE_CONFIG.replace("output_dir: runs/my-run", "output_dir: plain-file/run")
    with pytest.raises(KerafineError, match=r"field `output_dir`: .*plain-file/run'; expected a writable directory"):
        load_config(_write(tmp_path, text))


def test_output_dir_that_is_a_file_is_named(tmp_path):
    (tmp_path / "taken").write_text("x")
    text = EXAMPLE_CONFIG.replace("output_dir: runs/my-run", "output_dir: taken")
    with pytest.raises(
        KerafineError, match=r"field `output_dir`: Invalid value for argument `output_dir`.*a directory"
    ):
        load_config(_write(tmp_path, text))


def test_yaml_is_loaded_safely(tmp_path):
    text = EXAMPLE_CONFIG.replace("seed: 0", "seed: !!python/object/apply:os.system ['echo pwned']")
    with pytest.raises(KerafineError, match="not valid YAML"):
        load_config(_write(tmp_path, text))


def test_a_config_that_is_not_a_mapping_is_rejected(tmp_path):
    with pytest.raises(KerafineError, match="expected a mapping"):
        load_config(_write(tmp_path, "- just\n- a list\n"))


def test_fraction_errors_name_the_field(tmp_path):
    text = EXAMPLE_CONFIG.replace("    val: 0.2", "    val: 0.9")
    with pytest.raises(KerafineError, match=r"field `data.split`: .*val \+ test must be < 1"):
        load_config(_write(tmp_path, text))


def _leaf_keys(model_cls, prefix=""):
    """Dotted names of every field of a pydantic model, recursing into sub-models."""
    import typing

    from pydantic import BaseModel

    keys = []
    for name, field in model_cls.model_fields.items():
        candidates = [field.annotation, *typing.get_args(field.annotation)]
        subs = [c for c in candidates if isinstance(c, type) and issubclass(c, BaseModel)]
        if subs:
            for sub in subs:
                keys += _leaf_keys(sub, f"{prefix}{name}.")
        else:
            keys.append(f"{prefix}{name}")
    return sorted(set(keys))


def test_every_config_key_is_documented_in_the_example_and_the_readme():
    from pathlib import Path

    fit_section = (Path(__file__).resolve().parent.parent / "docs" / "config.md").read_text()
    example = EXAMPLE_CONFIG
    missing = []
    for key in _leaf_keys(FitConfig):
        leaf = key.split(".")[-1]
        if leaf == "kind":
            continue
        if f"{leaf}:" not in example and f"`{leaf}`" not in fit_section and f"`{key}`" not in fit_section:
            missing.append(key)
    assert not missing, f"config keys neither in EXAMPLE_CONFIG nor in docs/config.md: {missing}"


def test_keys_ignored_in_the_run_directory_comparison_are_real_keys():
    from kerafine.cli.fit import IGNORED_KEYS

    keys = set(_leaf_keys(FitConfig))
    assert set(IGNORED_KEYS) <= keys
    # Keys that change the trained model are compared.
    assert not {"schedule.learning_rate", "schedule.head_epochs", "backbone.units", "seed"} & set(IGNORED_KEYS)


TABULAR = "data: {kind: tabular, csv: clicks.csv, label: clicked}\noutput_dir: run\n"


@pytest.mark.parametrize(
    "backbone, field, detail",
    [
        (
            "{name: tabular, weights: enc.keras}",
            "backbone.weights",
            r"'\S*enc.keras' is not used with data.kind 'tabular'",
        ),
        ("{name: tabular, pretrain_epochs: 2}", "backbone.pretrain_epochs", r"2 is not used with data.kind 'tabular'"),
    ],
)
def test_tabular_refuses_the_sequence_only_backbone_keys_naming_them(tmp_path, backbone, field, detail):
    with pytest.raises(KerafineError, match=rf"field `{field}`: {field} {detail}.*remove the key"):
        load_config(_write(tmp_path, TABULAR + f"backbone: {backbone}\n"))


def test_tabular_accepts_pretrain_epochs_0_or_absent(tmp_path):
    assert (
        load_config(_write(tmp_path, TABULAR + "backbone: {name: tabular, pretrain_epochs: 0}\n")).backbone.name
        == "tabular"
    )
    assert load_config(_write(tmp_path, TABULAR + "backbone: {name: tabular}\n")).backbone.weights is None


def test_a_check_across_keys_is_reported_as_the_field_it_names(tmp_path):
    text = EXAMPLE_CONFIG.replace("name: lstm", "name: tabular")
    with pytest.raises(KerafineError, match=r"field `backbone.name`: backbone.name 'tabular' does not fit"):
        load_config(_write(tmp_path, text))


# ------------------------------------------------------------------ schedule.class_weight (issue 19)


def _with_class_weight(tmp_path, value):
    text = EXAMPLE_CONFIG.replace("  class_weight: null ", f"  class_weight: {value} ")
    assert text != EXAMPLE_CONFIG
    return load_config(_write(tmp_path, text))


def test_class_weight_accepts_null_balanced_or_a_mapping(tmp_path):
    assert load_config(_write(tmp_path, EXAMPLE_CONFIG)).schedule.class_weight is None
    assert _with_class_weight(tmp_path, "balanced").schedule.class_weight == "balanced"
    assert _with_class_weight(tmp_path, "{0: 1.0, 1: 7.5}").schedule.class_weight == {0: 1.0, 1: 7.5}


@pytest.mark.parametrize(
    "value, match",
    [
        ("balance", r"field `schedule.class_weight`: unknown class_weight 'balance'.*Did you mean \"balanced\""),
        ("{0: 1.0, 1: -3}", r"field `schedule.class_weight`: class_weight of class 1 is -3; weights must be finite"),
        ("{a: 1.0}", r"field `schedule.class_weight`: class_weight key 'a' is not a class index"),
        ("{0: 0, 1: 0}", r"field `schedule.class_weight`: .*every class weight 0"),
        ("[1, 2]", r"field `schedule.class_weight`: class_weight \[1, 2\] is not usable"),
    ],
)
def test_bad_class_weight_is_named_with_the_field(tmp_path, value, match):
    with pytest.raises(KerafineError, match=match):
        _with_class_weight(tmp_path, value)
