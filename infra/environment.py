"""The functions' ``IMSIM_*`` environment, named from the runtime's contract.

``runtime.settings.Settings`` reads ``IMSIM_<FIELD NAME IN CAPITALS>``. ``runtime/contract.py``
lists the settings a stack may write (each one a field of ``Settings``, which its tests check), so
a stack cannot write a variable the runtime would not read (or refuse); the CDK app imports only
that dependency-free module, not the settings themselves (pydantic).
"""

from __future__ import annotations

from runtime.contract import DEPLOYED_SETTINGS, setting_variable


def setting_names() -> tuple[str, ...]:
    """The settings a stack may write (field names of ``runtime.settings.Settings``)."""
    return DEPLOYED_SETTINGS


def variable_name(setting: str) -> str:
    """``store`` -> ``IMSIM_STORE``."""
    return setting_variable(setting)


def settings_environment(**values: str) -> dict[str, str]:
    """``IMSIM_<NAME>: value`` for each setting given, in order; a name that is not a setting is a bug here."""
    unknown = sorted(set(values) - set(setting_names()))
    if unknown:
        raise ValueError(
            f"not runtime settings: {', '.join(unknown)} (runtime/contract.py lists the settings a stack may "
            "write, DEPLOYED_SETTINGS; runtime/settings.py defines them)"
        )
    return {variable_name(name): value for name, value in values.items()}
