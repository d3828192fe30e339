from __future__ import annotations

import json
from importlib.metadata import distribution, entry_points
from pathlib import Path

import airflow
import jsonschema
import pytest

import airflow_provider_callbell
from airflow_provider_callbell.get_provider_info import get_provider_info


class TestProviderInfo:
    def test_entry_point_points_at_get_provider_info(self):
        (entry_point,) = [
            ep
            for ep in entry_points(group="apache_airflow_provider")
            if ep.value.startswith("airflow_provider_callbell")
        ]
        assert entry_point.load() is get_provider_info

    def test_package_name_is_the_distribution_name(self):
        info = get_provider_info()
        assert distribution(info["package-name"]).version == airflow_provider_callbell.__version__

    def test_valid_against_airflow_schema(self):
        schema = json.loads((Path(airflow.__file__).parent / "provider_info.schema.json").read_text())
        jsonschema.validate(get_provider_info(), schema)


@pytest.fixture(scope="module")
def providers_manager():
    from airflow.providers_manager import ProvidersManager

    manager = ProvidersManager()
    manager.initialize_providers_hooks()
    return manager


class TestProvidersManager:
    """What Airflow itself makes of the provider after install."""

    def test_lists_the_provider(self, providers_manager):
        provider = providers_manager.providers["airflow-provider-callbell"]
        assert provider.version == airflow_provider_callbell.__version__

    def test_binds_connection_type_to_hook(self, providers_manager):
        hook_info = providers_manager.hooks["callbell"]
        assert hook_info.hook_class_name == "airflow_provider_callbell.hooks.callbell.CallbellHook"
        assert hook_info.connection_id_attribute_name == "callbell_conn_id"
        assert hook_info.hook_name == "Callbell"

    def test_connection_form(self, providers_manager):
        behaviour = providers_manager.field_behaviours["callbell"]
        assert behaviour["relabeling"]["password"] == "API token"
        assert "login" in behaviour["hidden_fields"]
        widgets = providers_manager.connection_form_widgets
        assert {"extra__callbell__from", "extra__callbell__channel_uuid", "extra__callbell__timeout"} <= set(
            widgets
        )
        assert widgets["extra__callbell__timeout"].field["schema"]["title"] == "Timeout (seconds)"


class TestRegisteredModules:
    def test_every_listed_module_and_class_imports(self):
        import importlib

        info = get_provider_info()
        for kind in ("hooks", "operators", "sensors", "triggers"):
            for entry in info[kind]:
                for module in entry["python-modules"]:
                    importlib.import_module(module)
        for classpath in info["notifications"]:
            module, _, name = classpath.rpartition(".")
            assert getattr(importlib.import_module(module), name).__name__ == name

    def test_providers_manager_lists_the_notifier(self, providers_manager):
        providers_manager.initialize_providers_notifications()
        assert "airflow_provider_callbell.notifications.callbell.CallbellNotifier" in set(
            providers_manager.notification
        )
