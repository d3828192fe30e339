"""Apache Airflow provider for Callbell (WhatsApp, Telegram, Instagram, Facebook messaging).

Importing the package is free: nothing here imports Airflow, ``requests`` or the hook, so DAG files
that import the operator pay only for what they use.
"""

from __future__ import annotations

__version__ = "0.1.0"
