"""Configuration: ``admc.overrides.with_overrides`` and the checks every construction path runs
(one line naming the key and, for an enumerated setting, the allowed values)."""

from __future__ import annotations

import dataclasses

import pytest

from admc.config import ADNConfig, ConfigError, DataConfig, FusionConfig, ITFNConfig, TrainConfig
from admc.overrides import OverrideError, with_overrides

# every enumerated string setting: (section, key, allowed values, None allowed)
ENUMS = [
    ("adn", "variant", ("conditional", "paper", "regress"), False),
    ("adn", "prediction", ("epsilon", "sample", "v_prediction"), True),
    ("adn", "sampler", ("ddpm", "ddim", "mean", "prior", "neighbours"), False),
    ("adn", "schedule", ("linear", "scaled_linear", "squaredcos_cap_v2"), False),
    ("adn", "prior", ("linear", "none"), False),
    ("adn", "reading", ("noise", "sdedit_mean", "sdedit_ridge", "official", "official_clamp"), True),
    ("adn", "start_select", ("mse", "ua"), False),
    ("fusion", "mode", ("per-condition", "shared", "auto"), False),
    ("fusion", "shared_patterns", ("all", "full"), False),
    ("fusion", "incomplete", ("fill", "drop"), False),
]
SECTIONS = {"adn": ADNConfig, "fusion": FusionConfig}


def test_the_issue_example_is_one_line_naming_key_and_allowed_values():
    with pytest.raises(ConfigError) as e:
        with_overrides(["adn.sampler=dim"])
    assert str(e.value) == "adn.sampler must be one of ddpm, ddim, mean, prior, neighbours, got 'dim'"


@pytest.mark.parametrize("section, key, allowed, nullable", ENUMS)
def test_every_enumerated_setting_is_refused_by_every_construction_path(section, key, allowed, nullable):
    want = f"{section}.{key} must be one of {', '.join(allowed)}{' or null' if nullable else ''}, got 'bogus'"
    for build in (lambda: SECTIONS[section](**{key: "bogus"}),
                  lambda: TrainConfig.from_json({section: {key: "bogus"}}),
                  lambda: with_overrides([f"{section}.{key}=bogus"]),
                  lambda: with_overrides([(f"{section}.{key}", "bogus")])):
        with pytest.raises(ConfigError) as e:
            build()
        assert str(e.value) == want
    for value in allowed:  # and every allowed value is accepted (the neighbours sampler with its bank)
        extra = {"neighbour_bank": 10} if value == "neighbours" else {}
        assert getattr(SECTIONS[section](**{key: value, **extra}), key) == value


def test_every_string_setting_with_a_fixed_set_of_values_is_listed_here():
    """A string setting added to a section gets a check in its __post_init__ and a row in ENUMS."""
    listed = {f"{s}.{k}" for s, k, _, _ in ENUMS}
    for name, klass in (("itfn", ITFNConfig), ("adn", ADNConfig), ("fusion", FusionConfig), ("data", DataConfig)):
        for f in dataclasses.fields(klass):
            if "str" in str(f.type):
                assert f"{name}.{f.name}" in listed, f"{name}.{f.name} has no enumeration check"


@pytest.mark.parametrize("override, key, needle", [
    ("nope.x=1", "nope.x", "unknown setting (sections data, itfn, adn, fusion, calibration, imputer, linear)"),
    ("adn.colour=red", "adn.colour", "unknown setting"),
    ("adn.epochs=abc", "adn.epochs", "expected int, got 'abc'"),
    ("adn.lr=-1", "adn.lr", "must be > 0, got -1"),
    ("itfn.max_len=1.5", "itfn.max_len", "expected int or null, got 1.5"),
    ("adn.start_grid=[0]", "adn.start_grid", "must be a non-empty list of steps >= 1"),
    (("data.label_fraction", 0.0), "data.label_fraction", "must be in (0, 1], got 0.0"),
])
def test_bad_key_type_or_range_is_refused_before_anything_is_built(override, key, needle):
    with pytest.raises(OverrideError) as e:
        with_overrides(["adn.sampler=ddim", override])
    assert e.value.key == key and e.value.item == override and needle in e.value.reason
    assert str(e.value).startswith(f"{key}: ") and "\n" not in str(e.value)


def test_malformed_override_names_itself():
    for bad in ("adn", "sampler=ddim", "adn_sampler=ddim"):
        with pytest.raises(OverrideError) as e:
            with_overrides([bad])
        assert e.value.key is None and repr(bad) in str(e.value) and "section.key=value" in str(e.value)


def test_contradictions_and_cross_checks_are_config_errors():
    with pytest.raises(ConfigError, match=r"adn.prediction='sample' contradicts adn.variant='paper'"):
        with_overrides(["adn.variant=paper", "adn.prediction=sample"])
    with pytest.raises(ConfigError, match=r"key 'adn.start_step' is 5000, more than adn.num_train_timesteps"):
        with_overrides(["adn.start_step=5000"])
    with pytest.raises(ConfigError, match=r"key 'itfn' must be an object"):
        with_overrides([], base={"itfn": 5})


def test_values_are_read_as_json_except_for_string_settings_and_the_base_is_kept():
    base = with_overrides(["itfn.epochs=3"])
    cfg = with_overrides(["adn.sampler=ddim", "adn.lr=3e-4", "adn.start_grid=[5,20]",
                                      "adn.reading=null", "adn.prediction=sample", "fusion.mmer=false",
                                      ("data.train_missing_rate", 0.25)], base=base)
    assert isinstance(cfg, TrainConfig) and cfg is not base
    assert (cfg.adn.sampler, cfg.adn.lr, cfg.adn.start_grid, cfg.adn.reading) == ("ddim", 3e-4, [5, 20], None)
    assert (cfg.adn.prediction, cfg.fusion.mmer, cfg.data.train_missing_rate) == ("sample", False, 0.25)
    assert cfg.itfn.epochs == 3 and base.adn.sampler == "mean" and base.adn.start_grid == TrainConfig().adn.start_grid
    # a string setting takes the text as it is: "2" is the string '2' (then refused as a sampler)
    with pytest.raises(ConfigError, match="adn.sampler must be one of ddpm, ddim, mean, prior, neighbours, got '2'"):
        with_overrides(["adn.sampler=2"])
    # a dict base (a config file's layout) is checked and not modified
    obj = {"adn": {"epochs": 4}}
    assert with_overrides(["adn.lr=0.01"], base=obj).adn.epochs == 4 and obj == {"adn": {"epochs": 4}}
    assert with_overrides([]) == TrainConfig()


def test_cli_reports_an_enum_error_in_one_line_before_reading_the_data(tmp_path, capsys):
    from admc.cli import main

    assert main(["train", "--data", str(tmp_path / "none"), "--out", str(tmp_path / "r"), "--quiet",
                 "--set", "adn.sampler=dim"]) == 2
    assert capsys.readouterr().err == "admc: error: bad configuration: adn.sampler must be one of ddpm, ddim, " \
                                      "mean, prior, neighbours, got 'dim'\n"
    assert main(["train", "--data", str(tmp_path / "none"), "--out", str(tmp_path / "r"), "--quiet",
                 "--set", "adn.sampler"]) == 2
    assert capsys.readouterr().err == "admc: error: --set expects section.key=value (e.g. adn.sampler=mean), " \
                                      "got 'adn.sampler'\n"
    assert main(["train", "--data", str(tmp_path / "none"), "--out", str(tmp_path / "r"), "--quiet",
                 "--label-fraction", "0"]) == 2
    assert capsys.readouterr().err == "admc: error: --label-fraction 0: must be in (0, 1], got 0.0\n"
    assert not (tmp_path / "r").exists()
