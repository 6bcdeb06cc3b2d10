"""A configuration from the defaults, a config file's object and ``section.key=value`` overrides,
each checked as it comes (:mod:`admc.run_schema`), the whole validated once when it is built."""

from __future__ import annotations

import copy
import json
import typing
from collections.abc import Iterable
from dataclasses import fields

from admc.config import ConfigError, TrainConfig
from admc.run_schema import config_problem, sections, setting_problem


class OverrideError(ConfigError):
    """One override of :func:`with_overrides` refused before anything is built.

    ``item`` is the override as given, ``key`` the ``section.key`` it names (None when it is not
    of that form), ``reason`` why (``"unknown setting"`` for a key no section has)."""

    def __init__(self, item, key: str | None, reason: str, unknown: bool = False):
        self.item, self.key, self.reason, self.unknown = item, key, reason, unknown
        super().__init__(f"{key}: {reason}" if key else f"{item!r}: {reason}")


def with_overrides(overrides: Iterable[str | tuple[str, object]] = (),
                   base: TrainConfig | dict | None = None) -> TrainConfig:
    """A new configuration: ``base`` (the defaults when None; a TrainConfig, or a dict in the
    :meth:`TrainConfig.to_json` layout such as a config file) with ``overrides`` applied in order, then
    validated once, when it is built.

    An override is ``"section.key=value"``, the value read as JSON unless the setting is a
    string (``adn.sampler=ddim``, ``adn.lr=3e-4``, ``adn.start_grid=[5,20]``,
    ``adn.reading=null``), or a ``("section.key", value)`` pair taken as it is.  Raises
    :class:`OverrideError` for an override that is malformed, names no setting, or has a value of
    the wrong type or range (each checked as it comes, nothing built yet), and
    :class:`ConfigError` for the configuration as a whole: a value outside an enumeration
    (``adn.sampler must be one of ddpm, ddim, mean, prior, neighbours, got 'dim'``), a contradiction between
    settings, an unknown method.
    """
    if isinstance(base, TrainConfig):
        obj = base.to_json()
    elif base is None:
        obj = TrainConfig().to_json()
    else:
        why = config_problem(base)
        if why:
            raise ConfigError(why)
        obj = copy.deepcopy(base)
    secs = sections()
    for item in overrides:
        if isinstance(item, str):
            key, sep, text = item.partition("=")
            if not sep or "." not in key:
                raise OverrideError(item, None, "expected section.key=value (e.g. adn.sampler=mean)")
        else:
            key, value = item
        sec, k = key.split(".", 1) if "." in key else (key, "")
        if sec not in secs or k not in {f.name for f in fields(secs[sec])}:
            raise OverrideError(item, key, f"unknown setting (sections {', '.join(secs)})", unknown=True)
        if isinstance(item, str):
            value = text if typing.get_type_hints(secs[sec]).get(k) is str else _json_or_text(text)
        why = setting_problem(sec, k, value)
        if why:
            raise OverrideError(item, key, why)
        obj.setdefault(sec, {})[k] = value
    why = config_problem(obj)
    if why:
        raise ConfigError(why)
    try:
        return TrainConfig.from_json(obj)
    except TypeError as e:
        raise ConfigError(str(e)) from None


def _json_or_text(text: str):
    """An override's value: JSON (numbers, true/false, null, lists) or else the text itself."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text
