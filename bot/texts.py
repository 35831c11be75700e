"""Every sentence a person reads lives in texts.toml; a city overrides keys with its own file."""

from __future__ import annotations

import tomllib
from pathlib import Path

from bot.config import ConfigError

DEFAULT_FILE = Path(__file__).with_name("texts.toml")


def _flatten(table: dict, prefix: str = "") -> dict[str, str]:
    flat: dict[str, str] = {}
    for key, value in table.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{name}."))
        else:
            flat[name] = str(value)
    return flat


class Texts:
    """`texts("complaint.submitted", number=...)` → the formatted sentence."""

    def __init__(self, override_file: str | Path | None = None):
        with open(DEFAULT_FILE, "rb") as fh:
            self._texts = _flatten(tomllib.load(fh))
        if override_file:
            try:
                with open(override_file, "rb") as fh:
                    overrides = _flatten(tomllib.load(fh))
            except (OSError, tomllib.TOMLDecodeError) as exc:
                raise ConfigError(f"setting texts.override_file: cannot read {override_file}: {exc}") from None
            unknown = sorted(set(overrides) - set(self._texts))
            if unknown:
                raise ConfigError(f"setting texts.override_file: unknown text key {unknown[0]!r}")
            self._texts.update(overrides)
        self._words: dict[str, tuple[str, ...]] = {}

    def __call__(self, key: str, **values: object) -> str:
        return self._texts[key].format(**values)

    def words(self, key: str) -> tuple[str, ...]:
        """A [words] entry: the synonyms residents may use, space-separated in the file."""
        found = self._words.get(key)
        if found is None:  # asked on every message: split once
            found = self._words[key] = tuple(self._texts[key].split())
        return found

    def has(self, key: str) -> bool:
        return key in self._texts
