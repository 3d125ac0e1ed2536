"""dlt's anonymous usage telemetry, off unless asked for: a privacy tool does not call out on its own.

dlt sends anonymous usage events (`runtime.dlthub_telemetry`, default true) unless a `.dlt/config.toml`
or an env var says otherwise. Importing `concord_pipelines` registers a config provider, below dlt's env
vars and TOML files, whose only value is `runtime.dlthub_telemetry = false`: the CLI, the Airflow tasks and
code that imports the source run without telemetry, and `RUNTIME__DLTHUB_TELEMETRY=true` (or
`dlthub_telemetry = true` under `[runtime]` in .dlt/config.toml) turns it back on.
"""

from __future__ import annotations

from dlt.common.configuration.container import Container
from dlt.common.configuration.providers import DictionaryProvider
from dlt.common.configuration.specs.pluggable_run_context import PluggableRunContext
from dlt.common.runtime.telemetry import is_telemetry_started, stop_telemetry


class _PrivacyDefaults(DictionaryProvider):
    NAME = "concord privacy defaults"


def telemetry_off_by_default() -> None:
    """Register the provider (once per dlt run context) and restart dlt's telemetry with it in place.

    dlt resolves its runtime settings, and starts telemetry, when its run context is created, which
    reading the providers below may do: the restart applies the setting to the context that now exists.
    """
    context = Container()[PluggableRunContext]
    if _PrivacyDefaults.NAME in context.providers:
        return
    provider = _PrivacyDefaults()
    provider.set_value("runtime", {"dlthub_telemetry": False}, None)
    context.providers.add_provider(provider)
    if is_telemetry_started():
        stop_telemetry()
    context.initialize_runtime()


def telemetry_enabled() -> bool:
    """dlt's resolved `runtime.dlthub_telemetry` in the current run context."""
    return bool(Container()[PluggableRunContext].context.runtime_config.dlthub_telemetry)
