"""The functions' ``IMSIM_*`` environment, named from the runtime's own settings.

``runtime.settings.Settings`` reads ``IMSIM_<FIELD NAME IN CAPITALS>``; building the variables from
its field names means a stack cannot write a variable the runtime would not read (or refuse).
"""

from __future__ import annotations

import dataclasses

from runtime.settings import ENV_PREFIX, Settings


def setting_names() -> tuple[str, ...]:
    """The settings' field names, whether ``Settings`` is a pydantic model or a dataclass."""
    model_fields = getattr(Settings, "model_fields", None)
    if model_fields is not None:
        return tuple(model_fields)
    return tuple(field.name for field in dataclasses.fields(Settings))  # type: ignore[arg-type]


def variable_name(setting: str) -> str:
    """``store`` -> ``IMSIM_STORE``."""
    return ENV_PREFIX + setting.upper()


def settings_environment(**values: str) -> dict[str, str]:
    """``IMSIM_<NAME>: value`` for each setting given; a name that is not a setting is a bug here."""
    unknown = sorted(set(values) - set(setting_names()))
    if unknown:
        raise ValueError(f"not runtime settings: {', '.join(unknown)} (see runtime/settings.py)")
    return {variable_name(name): value for name, value in values.items()}
