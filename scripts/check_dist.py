"""`make dist`: build the release files and prove that the wheel works where a user installs it.

1. ``python -m build`` makes the sdist and the wheel in a temporary folder (or ``--outdir``).
2. ``twine check --strict`` accepts both (the README renders on PyPI, the metadata is complete).
3. The wheel holds the package only (with ``py.typed``), the sdist the tests, example DAGs and docs,
   and the metadata names the provider classifier, the licence, the URLs and the entry point.
4. For each Airflow line pinned in ``requirements/airflow-*.in`` (or those given with ``--airflow``),
   the lines side by side: a fresh venv gets the wheel and that Airflow from PyPI and nothing else,
   with the lowest urllib3 and httpx the wheel allows, and ``airflow providers list`` must show
   airflow-provider-callbell at this package's version. Then the installed package sends through its own sandbox: a send that is
   retried after a ``503`` (urllib3 carries the retry policy) and a status read on the async path
   (httpx), so that a lower bound that no longer works fails here.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tarfile
import tempfile
import time
import zipfile
from concurrent.futures import ThreadPoolExecutor
from email.parser import Parser
from pathlib import Path

from packaging.version import Version

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
DIST_NAME = "airflow-provider-callbell"
#: Installed at their lowest allowed version (the wheel's ``>=`` bound) in every fresh venv.
LOWEST_PINNED = ("urllib3", "httpx")
#: Run by the fresh venv's Python: one retried send (sync path), one status read (async path).
SMOKE = """
import asyncio, json, os
import httpx, urllib3
from airflow_provider_callbell.sandbox import CallbellSandbox

with CallbellSandbox(error_rate=0.5, seed=4) as flaky, CallbellSandbox() as clean:
    from airflow_provider_callbell.hooks.callbell import CallbellHook

    os.environ["AIRFLOW_CONN_CALLBELL_DEFAULT"] = flaky.connection_json
    CallbellHook().send_message("+31612345678", content={"text": "retried"})
    os.environ["AIRFLOW_CONN_CALLBELL_DEFAULT"] = clean.connection_json
    uuid = CallbellHook().send_message("+31612345678", content={"text": "hello"})["uuid"]
    status = asyncio.run(CallbellHook().aget_message_status(uuid))["status"]
    print(json.dumps({
        "urllib3": urllib3.__version__,
        "httpx": httpx.__version__,
        "flaky": [r["status"] for r in flaky.requests],
        "status": status,
    }))
"""
REPO_URL = "https://github.com/airflow-provider-callbell/airflow-provider-callbell"


def step(message: str) -> None:
    print(f"==> {message}", flush=True)


def require(condition: object, message: str) -> None:
    if not condition:
        sys.exit(f"make dist failed: {message}")


def run(args: list[str | Path], env: dict[str, str] | None = None) -> str:
    proc = subprocess.run([str(a) for a in args], capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        sys.exit(f"{' '.join(map(str, args[:4]))} ... exited {proc.returncode}:\n{proc.stdout}{proc.stderr}")
    out: str = proc.stdout
    return out


def package_version() -> str:
    match = re.search(
        r'^__version__ = "([^"]+)"', (ROOT / "airflow_provider_callbell/__init__.py").read_text(), re.M
    )
    if not match:
        sys.exit("no __version__ in airflow_provider_callbell/__init__.py")
    return match[1]


def pinned_airflow_versions() -> list[str]:
    versions = []
    for path in sorted((ROOT / "requirements").glob("airflow-*.in")):
        match = re.search(r"^apache-airflow==(\S+)", path.read_text(), re.M)
        if match:
            versions.append(match[1])
    return versions


def check_contents(wheel: Path, sdist: Path, version: str) -> None:
    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
        metadata = Parser().parsestr(
            zf.read(f"airflow_provider_callbell-{version}.dist-info/METADATA").decode()
        )
        entry_points = zf.read(f"airflow_provider_callbell-{version}.dist-info/entry_points.txt").decode()
    outside = [
        n for n in names if not n.startswith(("airflow_provider_callbell/", "airflow_provider_callbell-"))
    ]
    require(not outside, f"the wheel holds files outside the package: {outside}")
    require("airflow_provider_callbell/py.typed" in names, "the wheel lacks py.typed")
    require(
        "airflow_provider_callbell/sandbox/inbox.html" in names, "the wheel lacks the sandbox's inbox page"
    )

    with tarfile.open(sdist) as tf:
        members = {Path(m.name).relative_to(f"airflow_provider_callbell-{version}").as_posix() for m in tf}
    for needed in (
        "README.md",
        "CHANGELOG.md",
        "LICENSE",
        "pyproject.toml",
        "tests/conftest.py",
        "example_dags/example_callbell_pipeline.py",
        "airflow_provider_callbell/py.typed",
    ):
        require(needed in members, f"the sdist lacks {needed}")
    require(
        not any(m.startswith((".venv", ".demo", "dist/")) for m in members),
        "the sdist holds a venv or build output",
    )

    require(
        (metadata["Name"], metadata["Version"]) == (DIST_NAME, version),
        f"the wheel is {metadata['Name']} {metadata['Version']}, want {DIST_NAME} {version}",
    )
    require(
        "Framework :: Apache Airflow :: Provider" in metadata.get_all("Classifier", []),
        "no 'Framework :: Apache Airflow :: Provider' classifier",
    )
    require(
        metadata["License-Expression"] == "Apache-2.0",
        f"License-Expression is {metadata['License-Expression']!r}, want 'Apache-2.0'",
    )
    require("LICENSE" in metadata.get_all("License-File", []), "the metadata names no License-File LICENSE")
    urls = dict(u.split(", ", 1) for u in metadata.get_all("Project-URL", []))
    require(
        set(urls) >= {"Homepage", "Source", "Issues", "Changelog"} and urls["Source"] == REPO_URL,
        f"Project-URLs {urls} lack Homepage/Source/Issues/Changelog or Source is not {REPO_URL}",
    )
    requires = metadata.get_all("Requires-Dist", [])
    for name in ("apache-airflow", *LOWEST_PINNED):
        require(any(r.startswith(f"{name}>=") for r in requires), f"no {name}>= in {requires}")
    require(
        "[apache_airflow_provider]" in entry_points and "get_provider_info:get_provider_info" in entry_points,
        f"entry_points.txt lacks the apache_airflow_provider entry point:\n{entry_points}",
    )


def lowest_allowed(wheel: Path, version: str) -> dict[str, str]:
    """``{"urllib3": "2.0", ...}``: the ``>=`` bound the wheel's metadata gives each of LOWEST_PINNED."""
    with zipfile.ZipFile(wheel) as zf:
        metadata = Parser().parsestr(
            zf.read(f"airflow_provider_callbell-{version}.dist-info/METADATA").decode()
        )
    bounds = {}
    for line in metadata.get_all("Requires-Dist", []):
        match = re.fullmatch(r"([A-Za-z0-9_.-]+)>=([0-9.]+)", line.strip())
        if match and match[1] in LOWEST_PINNED:
            bounds[match[1]] = match[2]
    require(set(bounds) == set(LOWEST_PINNED), f"no >= bound for each of {LOWEST_PINNED} in the wheel")
    return bounds


# Run in the fresh venv: the sandbox from the installed wheel answers GET / with its page, a package
# resource that a wheel built without it would lack.
INBOX_CHECK = """
import urllib.request
from airflow_provider_callbell.sandbox import CallbellSandbox
with CallbellSandbox() as sandbox:
    print(urllib.request.urlopen(f"http://{sandbox.host}:{sandbox.port}/", timeout=10).read().decode())
"""


def check_install(wheel: Path, airflow_version: str, version: str, work: Path) -> None:
    venv = work / f"venv-airflow-{airflow_version}"
    lowest = lowest_allowed(wheel, version)
    run([BIN / "uv", "venv", "--quiet", "--python", sys.executable, venv])
    started = time.monotonic()
    run(
        [
            BIN / "uv",
            "pip",
            "install",
            "--quiet",
            "--python",
            venv / "bin" / "python",
            wheel,
            f"apache-airflow=={airflow_version}",
            *(f"{name}=={bound}" for name, bound in lowest.items()),
        ]
    )
    pins = ", ".join(f"{name}=={bound}" for name, bound in lowest.items())
    step(
        f"installed the wheel with apache-airflow=={airflow_version}, {pins} "
        f"in {time.monotonic() - started:.0f} s"
    )
    env = {
        "AIRFLOW_HOME": str(work / f"home-{airflow_version}"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "PATH": f"{venv / 'bin'}:/usr/bin:/bin",
    }
    out = run([venv / "bin" / "airflow", "providers", "list", "--output", "json"], env=env)
    providers = json.loads(out[out.index("[") :])
    found = {p["package_name"]: p["version"] for p in providers}
    require(
        found.get(DIST_NAME) == version,
        f"airflow providers list shows {found.get(DIST_NAME)!r}, want {version!r}",
    )
    step(f"airflow {airflow_version}: `airflow providers list` shows {DIST_NAME} {found[DIST_NAME]}")
    page = run([venv / "bin" / "python", "-c", INBOX_CHECK], env=env)
    require(
        "<title>Callbell sandbox inbox</title>" in page, f"the installed sandbox serves no inbox:\n{page}"
    )
    step(f"airflow {airflow_version}: the installed sandbox serves its web inbox")

    out = run([venv / "bin" / "python", "-c", SMOKE], env=env)
    smoke = json.loads(out.strip().splitlines()[-1])
    require(
        Version(smoke["urllib3"]) == Version(lowest["urllib3"])
        and Version(smoke["httpx"]) == Version(lowest["httpx"]),
        f"the venv has urllib3 {smoke['urllib3']} and httpx {smoke['httpx']}, want {pins}",
    )
    flaky = smoke["flaky"]
    require(flaky[0] == 503 and flaky[-1] == 200, f"the send was not retried after a 503: {flaky}")
    require(smoke["status"] in ("enqueued", "sent", "delivered", "read"), f"odd status {smoke['status']!r}")
    step(f"airflow {airflow_version}, {pins}: a send retried after a 503, a status read over httpx")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--outdir", type=Path, help="keep the built files here (default: a temporary folder)")
    parser.add_argument("--airflow", action="append", help="Airflow version to install the wheel with")
    args = parser.parse_args()
    version = package_version()
    with tempfile.TemporaryDirectory(prefix="callbell-dist-") as tmp:
        work = Path(tmp)
        outdir = args.outdir or work / "dist"
        step(f"python -m build -> {outdir}")
        run([sys.executable, "-m", "build", "--installer", "uv", "--outdir", outdir, ROOT])
        wheel = outdir / f"airflow_provider_callbell-{version}-py3-none-any.whl"
        sdist = outdir / f"airflow_provider_callbell-{version}.tar.gz"
        step("twine check --strict")
        print(
            run(
                [BIN / "twine", "--no-color", "check", "--strict", wheel, sdist],
                env={**os.environ, "COLUMNS": "200"},
            ).strip()
        )
        check_contents(wheel, sdist, version)
        step("wheel: the package and py.typed only; sdist: tests, example DAGs, README, CHANGELOG, LICENSE")
        # The Airflow lines side by side: each one's venv, home and sandboxes are its own, and most of
        # the time goes to resolving and installing from PyPI. A failure in either (sys.exit) is
        # raised again here by result().
        airflow_versions = args.airflow or pinned_airflow_versions()
        with ThreadPoolExecutor(max_workers=len(airflow_versions)) as pool:
            checks = [
                pool.submit(check_install, wheel, airflow_version, version, work)
                for airflow_version in airflow_versions
            ]
            for check in checks:
                check.result()
    print(f"\n{DIST_NAME} {version}: release files check out")


if __name__ == "__main__":
    main()
