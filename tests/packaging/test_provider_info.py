from __future__ import annotations

import importlib
import json
import subprocess
import sys
import textwrap
from importlib.metadata import distribution, entry_points
from pathlib import Path

import airflow
import jsonschema
import pytest

import airflow_provider_callbell
from airflow_provider_callbell.get_provider_info import CONN_FIELDS, get_provider_info
from airflow_provider_callbell.hooks.callbell import CallbellHook
from airflow_provider_callbell.version_compat import AIRFLOW_V_3_1_PLUS

AIRFLOW_DIR = Path(airflow.__file__).parent
#: Human-in-the-loop came with Airflow 3.1: on older ones these modules refuse to import, saying so.
HITL_MODULES = {"airflow_provider_callbell.operators.hitl", "airflow_provider_callbell.triggers.hitl"}


def import_listed(module: str) -> None:
    """Import a module the provider info lists; a HITL module on Airflow 2.x must refuse clearly."""
    if module in HITL_MODULES and not AIRFLOW_V_3_1_PLUS:
        with pytest.raises(ImportError, match=r"needs Airflow 3\.1 or later .*this is Airflow 2\."):
            importlib.import_module(module)
        return
    importlib.import_module(module)


PACKAGE_DIR = Path(airflow_provider_callbell.__file__).parent


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
        schema = json.loads((AIRFLOW_DIR / "provider_info.schema.json").read_text())
        jsonschema.validate(get_provider_info(), schema)

    def test_ui_field_behaviour_valid_against_airflow_schema(self):
        schema = json.loads((AIRFLOW_DIR / "customized_form_field_behaviours.schema.json").read_text())
        jsonschema.validate(CallbellHook.get_ui_field_behaviour(), schema)

    @pytest.mark.parametrize("section", ["hooks", "operators", "sensors", "triggers"])
    def test_lists_every_module_of_the_package(self, section):
        """A new module under hooks/, operators/, sensors/ or triggers/ must be registered to be found."""
        on_disk = {
            f"airflow_provider_callbell.{section}.{path.stem}"
            for path in (PACKAGE_DIR / section).glob("*.py")
            if path.stem != "__init__"
        }
        listed = {
            module for entry in get_provider_info().get(section, []) for module in entry["python-modules"]
        }
        assert listed == on_disk
        for module in listed:
            import_listed(module)

    def test_lists_every_notifier(self):
        on_disk = {
            f"airflow_provider_callbell.notifications.{path.stem}"
            for path in (PACKAGE_DIR / "notifications").glob("*.py")
            if path.stem != "__init__"
        }
        listed = get_provider_info().get("notifications", [])
        assert {class_path.rpartition(".")[0] for class_path in listed} == on_disk
        for class_path in listed:
            module, _, name = class_path.rpartition(".")
            assert isinstance(getattr(importlib.import_module(module), name), type), class_path

    def test_every_entry_names_a_declared_integration(self):
        info = get_provider_info()
        integrations = {integration["integration-name"] for integration in info["integrations"]}
        for section in ("hooks", "operators", "sensors", "triggers"):
            for entry in info.get(section, []):
                assert entry["integration-name"] in integrations, (section, entry)

    def test_connection_type_matches_the_hook(self):
        (connection_type,) = get_provider_info()["connection-types"]
        assert connection_type["hook-class-name"] == f"{CallbellHook.__module__}.{CallbellHook.__qualname__}"
        assert connection_type["connection-type"] == CallbellHook.conn_type
        assert connection_type["hook-name"] == CallbellHook.hook_name


@pytest.fixture(scope="module")
def providers_manager():
    from airflow.providers_manager import ProvidersManager

    manager = ProvidersManager()
    manager.initialize_providers_hooks()
    return manager


def _label(widget_info) -> str:
    """A form field's label: Airflow 3.2+ keeps ``conn-fields`` as JSON schema, older ones a wtforms field."""
    field = widget_info.field
    return field["schema"]["title"] if isinstance(field, dict) else str(field.args[0])


class TestProvidersManager:
    """What Airflow itself makes of the provider after install."""

    def test_lists_the_provider(self, providers_manager):
        provider = providers_manager.providers["airflow-provider-callbell"]
        assert provider.version == airflow_provider_callbell.__version__

    def test_binds_connection_type_to_hook(self, providers_manager):
        try:  # where workers look hooks up since the task SDK has its own providers manager
            from airflow.sdk.providers_manager_runtime import ProvidersManagerTaskRuntime
        except ImportError:  # Airflow 2.x
            hooks = providers_manager.hooks
        else:
            hooks = ProvidersManagerTaskRuntime().hooks
        hook_info = hooks["callbell"]
        assert hook_info.hook_class_name == "airflow_provider_callbell.hooks.callbell.CallbellHook"
        assert hook_info.connection_id_attribute_name == "callbell_conn_id"
        assert hook_info.hook_name == "Callbell"
        assert hook_info.connection_testable

    def test_connection_form(self, providers_manager):
        behaviour = providers_manager.field_behaviours["callbell"]
        assert behaviour["relabeling"] == {
            "password": "API token (required)",
            "host": "Base URL",
            "port": "Port (optional)",
        }
        assert set(behaviour["hidden_fields"]) == {"login", "schema", "extra"}
        widgets = providers_manager.connection_form_widgets
        labels = {
            name: _label(info) for name, info in widgets.items() if name.startswith("extra__callbell__")
        }
        assert labels == {f"extra__callbell__{name}": spec["label"] for name, spec in CONN_FIELDS.items()}
        assert labels["extra__callbell__timeout"] == "Timeout (seconds)"

    def test_registers_without_warnings(self):
        """A fresh process, so that nothing initialised the providers before the log is watched."""
        code = textwrap.dedent(
            """
            import json, logging, warnings
            from airflow.providers_manager import ProvidersManager

            # After the import: importing airflow configures logging and replaces the handlers.
            records = []
            handler = logging.Handler(logging.WARNING)
            handler.emit = lambda record: records.append(record.getMessage())
            logging.getLogger("airflow.providers_manager").addHandler(handler)
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                manager = ProvidersManager()
                manager.initialize_providers_hooks()
                manager.hooks["callbell"], manager.connection_form_widgets, manager.field_behaviours
            records += [str(w.message) for w in caught]
            print(json.dumps([r for r in records if "callbell" in r.lower()]))
            """
        )
        proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
        assert json.loads(proc.stdout.strip().splitlines()[-1]) == []


class TestRegisteredModules:
    def test_every_listed_module_and_class_imports(self):
        import importlib

        info = get_provider_info()
        for kind in ("hooks", "operators", "sensors", "triggers"):
            for entry in info[kind]:
                for module in entry["python-modules"]:
                    import_listed(module)
        for classpath in info["notifications"]:
            module, _, name = classpath.rpartition(".")
            assert getattr(importlib.import_module(module), name).__name__ == name

    def test_providers_manager_lists_the_notifier(self, providers_manager):
        providers_manager.initialize_providers_notifications()
        assert "airflow_provider_callbell.notifications.callbell.CallbellNotifier" in set(
            providers_manager.notification
        )
