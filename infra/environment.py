"""The functions' ``IMSIM_*`` environment, named from the runtime's contract.

``runtime.settings.Settings`` reads ``IMSIM_<FIELD NAME IN CAPITALS>``. ``runtime/contract.py``
lists the settings a stack may write (each one a field of ``Settings``, which its tests check), so
a stack cannot write a variable the runtime would not read (or refuse); the CDK app imports only
that dependency-free module, not the settings themselves (pydantic).
"""

from __future__ import annotations

from runtime.contract import DEPLOYED_SETTINGS, setting_variable


def settings_environment(**values: str) -> dict[str, str]:
    """``IMSIM_<NAME>: value`` for each setting given, in order; a name that is not a setting is a bug here."""
    unknown = sorted(set(values) - set(DEPLOYED_SETTINGS))
    if unknown:
        raise ValueError(
            f"not runtime settings: {', '.join(unknown)} (runtime/contract.py lists the settings a stack may "
            "write, DEPLOYED_SETTINGS; runtime/settings.py defines them)"
        )
    return {setting_variable(name): value for name, value in values.items()}
