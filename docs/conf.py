"""Sphinx configuration of the documentation site: Markdown pages (MyST) and an API reference from docstrings.

``make docs`` builds it offline into ``docs/_build/html`` with warnings as errors and nitpicky references:
nothing here may need the network (no intersphinx, no remote images).
"""

from __future__ import annotations

import atexit
import inspect
import logging
import os
import re
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

# autodoc imports the provider, hence Airflow, which writes a config into AIRFLOW_HOME on first import:
# give it a throwaway home, so that building the docs never touches a real Airflow's files.
_airflow_home = tempfile.mkdtemp(prefix="callbell-docs-airflow-home-")
atexit.register(shutil.rmtree, _airflow_home, ignore_errors=True)
os.environ["AIRFLOW_HOME"] = _airflow_home
os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
os.environ["AIRFLOW__LOGGING__LOGGING_LEVEL"] = "WARNING"
logging.getLogger("airflow").setLevel(logging.WARNING)  # no INFO lines from Airflow's import in the output

from airflow_provider_callbell import __version__  # noqa: E402  (after AIRFLOW_HOME is set)

project = "airflow-provider-callbell"
author = "airflow-provider-callbell developers"
copyright = "the airflow-provider-callbell developers"
version = release = __version__

extensions = ["myst_parser", "sphinx.ext.autodoc"]
source_suffix = {".md": "markdown"}
exclude_patterns = ["_build"]
root_doc = "index"

# MyST: anchors for headings down to ###, so that pages link to `page.md#a-heading` (checked by -n);
# ::: fences and definition lists for pages that want them.
myst_heading_anchors = 3
myst_enable_extensions = ["colon_fence", "deflist"]

# The API reference: signatures with their type hints, members in source order.
autodoc_typehints = "signature"
autodoc_member_order = "bysource"
autodoc_default_options = {"members": True, "show-inheritance": True}
autodoc_class_signature = "mixed"

# Nitpicky mode (-n) checks every reference into this package. References to other projects (Airflow,
# the standard library, requests) cannot resolve without intersphinx, which needs the network: only
# those are let through.
nitpick_ignore_regex = [(r"py:.*", r"(?!airflow_provider_callbell\b).*")]
# Nitpicky here as well as by `make docs`'s -n, so that Read the Docs (which runs sphinx-build with its
# own options, see .readthedocs.yaml) checks the same references.
nitpicky = True

html_theme = "furo"
html_title = f"airflow-provider-callbell {release}"
html_static_path: list[str] = []


def _public_bases(app: object, name: str, obj: object, options: object, bases: list[type]) -> None:
    """Show only public base classes: a private mixin is an implementation detail, and has no page."""
    bases[:] = [base for base in bases if not base.__name__.startswith("_")]


def _escape_trailing_underscores(
    app: object, what: str, name: str, obj: object, options: object, lines: list[str]
) -> None:
    """Keep ``from_`` in ``:param from_:``: reST reads a trailing ``_`` as a link and would show ``from``."""
    lines[:] = [re.sub(r"^(\s*:param (?:[\w\[\], |]+ )?\w+?)_:", r"\1\\_:", line) for line in lines]


def _name_function_defaults(
    app: object,
    what: str,
    name: str,
    obj: Any,
    options: object,
    signature: str | None,
    annotation: str | None,
) -> tuple[str | None, str | None]:
    """Show a default that is a function by its name (``time.sleep``), not by its unparsable repr.

    ``<built-in function sleep>`` would make Sphinx give up parsing the signature and print it raw.
    """
    if not signature or not callable(obj):
        return signature, annotation
    try:
        parameters = inspect.signature(obj).parameters.values()
    except (TypeError, ValueError):
        return signature, annotation
    for parameter in parameters:
        default = parameter.default
        if inspect.isroutine(default):
            signature = signature.replace(repr(default), f"{default.__module__}.{default.__qualname__}")
    return signature, annotation


def setup(app: Any) -> None:
    app.connect("autodoc-process-bases", _public_bases)
    app.connect("autodoc-process-docstring", _escape_trailing_underscores)
    app.connect("autodoc-process-signature", _name_function_defaults)
