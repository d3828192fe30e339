"""The documentation site builds without a warning, and its API reference leaves nothing public out.

The test builds the site itself, with ``make docs``'s Sphinx options (read from the Makefile) into a
temporary folder, rather than reading ``docs/_build``: so ``make test`` catches a class or a parameter
missing from the docs on a fresh clone, whether or not anyone ran ``make docs``, and a stale build can
never make it pass. One build (about 20 s) serves every check. It runs on the Airflow 3 line only, the
one ``make docs`` builds the site with.
"""

from __future__ import annotations

import html
import importlib
import inspect
import os
import pkgutil
import re
import shlex
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

import airflow_provider_callbell
from airflow_provider_callbell.retry import RetryPolicy
from airflow_provider_callbell.version_compat import (
    AIRFLOW_V_3_0_PLUS,
    BaseHook,
    BaseNotifier,
    BaseOperator,
    BaseTrigger,
)

if TYPE_CHECKING:
    from types import ModuleType

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.skipif(not AIRFLOW_V_3_0_PLUS, reason="make docs builds the site on Airflow 3")

#: What users import: every public class and function of these modules must be in the API reference.
PUBLIC_MODULES = (
    "airflow_provider_callbell.hooks.callbell",
    "airflow_provider_callbell.hooks.airflow_api",
    "airflow_provider_callbell.operators.callbell",
    "airflow_provider_callbell.operators.hitl",
    "airflow_provider_callbell.notifications.callbell",
    "airflow_provider_callbell.sensors.callbell",
    "airflow_provider_callbell.triggers.callbell",
    "airflow_provider_callbell.triggers.hitl",
    "airflow_provider_callbell.exceptions",
    "airflow_provider_callbell.retry",
    "airflow_provider_callbell.progress",
    "airflow_provider_callbell.sandbox",
    "airflow_provider_callbell.sandbox.pytest_plugin",
)
#: Modules with no page on purpose: plumbing for Airflow (its provider entry point, the per-version
#: imports) and the sandbox's server and CLI, whose public face is ``CallbellSandbox`` and the sandbox page.
UNDOCUMENTED_MODULES = {
    "airflow_provider_callbell.get_provider_info",
    "airflow_provider_callbell.version_compat",
    "airflow_provider_callbell.sandbox.server",
    "airflow_provider_callbell.sandbox.__main__",
    "airflow_provider_callbell.sandbox.inbox",  # the server's web page, reached over HTTP only
}
#: What a DAG author constructs: every constructor parameter of these must be described (a ``:param:``
#: in the docstring), not just listed in the signature. The sandbox's options are on the sandbox page.
DESCRIBED_CLASSES = (BaseOperator, BaseNotifier, BaseTrigger, BaseHook, RetryPolicy)


def sphinx_options() -> list[str]:
    match = re.search(r"^SPHINXOPTS := (.+)$", (ROOT / "Makefile").read_text(), re.M)
    assert match, "the Makefile defines SPHINXOPTS for make docs"
    return shlex.split(match[1])


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("docs-html")
    env = {key: value for key, value in os.environ.items() if not key.startswith("AIRFLOW_CONN_")}
    proc = subprocess.run(
        [sys.executable, "-m", "sphinx", "-b", "html", *sphinx_options(), str(ROOT / "docs"), str(out)],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "WARNING" not in proc.stderr, proc.stderr
    return out


def public_names(module: ModuleType) -> list[str]:
    """The classes and functions a module offers: its ``__all__``, else what it defines without a ``_``.

    An alias (``send_callbell_notification = CallbellNotifier``) counts: users import it by that name.
    """
    if hasattr(module, "__all__"):
        return list(module.__all__)
    return [
        name
        for name, value in vars(module).items()
        if not name.startswith("_")
        and callable(value)  # classes, functions, and pytest fixtures (which are neither)
        and getattr(value, "__module__", None) == module.__name__
    ]


def entry(page: str, anchor: str) -> tuple[str, str]:
    """The rendered signature (``<dt>``) and description (up to its first member) of an API entry."""
    start = page.find(f'<dt class="sig sig-object py" id="{anchor}">')
    assert start >= 0, f"{anchor} is not in the API reference"
    end = page.index("</dt>", start)
    body_end = min(i for i in (page.find('<dl class="py', end), page.find("</dd>", end)) if i >= 0)
    return page[start:end], page[end:body_end]


def constructor_parameters(cls: type) -> list[str]:
    return [
        parameter.name
        for parameter in inspect.signature(cls.__init__).parameters.values()
        if parameter.name != "self"
        and parameter.kind not in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD)
    ]


def test_every_module_is_in_the_reference_or_undocumented_on_purpose(site):
    page = (site / "api.html").read_text()
    wrong = []
    for module in pkgutil.walk_packages(airflow_provider_callbell.__path__, "airflow_provider_callbell."):
        if module.ispkg and not public_names(importlib.import_module(module.name)):
            continue  # an empty namespace package: hooks, operators, ...
        documented = f'id="module-{module.name}"' in page
        if documented == (module.name in UNDOCUMENTED_MODULES):
            wrong.append(module.name)
    assert not wrong, f"add each to docs/api.md, or to UNDOCUMENTED_MODULES with the reason: {wrong}"


@pytest.mark.parametrize("module_name", PUBLIC_MODULES)
def test_public_classes_and_their_parameters_are_in_the_reference(site, module_name):
    page = (site / "api.html").read_text()
    module = importlib.import_module(module_name)
    names = public_names(module)
    assert names, module_name
    for name in names:
        value = getattr(module, name)
        signature, description = entry(page, f"{module_name}.{name}")
        if not inspect.isclass(value) or "__init__" not in vars(value) or value.__name__ != name:
            continue  # no constructor of its own, or an alias, rendered as "alias of ..."
        rendered = re.findall(
            r'<em class="sig-param"><span class="n"><span class="pre">(\w+)</span>', signature
        )
        parameters = constructor_parameters(value)
        assert rendered == parameters, f"{name}'s signature in the API reference"
        if issubclass(value, DESCRIBED_CLASSES):
            described = set(re.findall(r"(?:<li>)?<p><strong>(\w+)</strong>", html.unescape(description)))
            missing = [parameter for parameter in parameters if parameter not in described]
            assert not missing, f"{name}: no ':param' in its docstring for {missing}"


def test_the_pages_link_the_api_they_name(site):
    """A page's {class} role renders as a link into the reference, so a renamed class breaks the build."""
    index = (site / "index.html").read_text()
    assert 'href="api.html#airflow_provider_callbell.operators.callbell.CallbellSendMessageOperator"' in index
