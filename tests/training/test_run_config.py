"""The typed run config: checked once, converted once, one-line errors for mappings handed to train()."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest

from segnet_domains.errors import InputError
from segnet_domains.training import DEFAULTS, ModelConfig, RunConfig, TrainSettings, build_config, train
from tests.training.conftest import CONFIGS, TINY_RITE


def test_build_config_converts_to_typed_sections(tmp_path: Path) -> None:
    cfg = build_config(
        CONFIGS / "rite_vessels.yaml", [*TINY_RITE, "train.lr=1"], data_root=tmp_path, out=tmp_path
    )
    run = RunConfig.from_dict(cfg, "c.yaml")
    assert isinstance(run.model, ModelConfig) and isinstance(run.train, TrainSettings)
    assert run.task == "rite_vessels" and run.out == tmp_path and run.data["root"] == str(tmp_path)
    assert run.model.features == [8, 16, 32, 32, 32] and run.train.batch_size == 2
    assert isinstance(run.train.lr, float) and run.train.lr == 1.0  # an integer YAML value, as a float
    assert run.train.bn_stats_batches == 2 and run.train.max_steps_per_epoch is None
    assert RunConfig.from_dict(run.to_dict()) == run  # the mapping round-trips
    assert set(DEFAULTS["train"]) == set(run.to_dict()["train"])  # one list of keys: the dataclass fields


@pytest.mark.parametrize(
    "section, key, value, match",
    [
        ("train", "epochs", "3", r"train.epochs must be an integer, got '3' \(str\)"),
        ("train", "lr", -1.0, "train.lr must be a positive number"),
        ("train", "max_steps_per_epoch", "many", "train.max_steps_per_epoch must be a positive integer"),
        ("model", "dropout", 1.5, r"model.dropout must be a number in \[0, 1\)"),
        ("train", "speed", 11, "unknown config key 'train.speed'"),
    ],
)
def test_a_mapping_given_to_train_is_checked_in_one_line(
    tmp_path: Path, section: str, key: str, value: object, match: str
) -> None:
    cfg = build_config(CONFIGS / "rite_vessels.yaml", TINY_RITE, data_root=tmp_path, out=tmp_path / "run")
    bad = copy.deepcopy(cfg)
    bad[section][key] = value
    with pytest.raises(InputError, match=match) as err:
        train(bad)
    assert "\n" not in str(err.value)
    assert not (tmp_path / "run").exists()  # refused before anything is written
