"""The wheel: built from this checkout, it holds the project's own packages and their data, declares its
dependencies, and, installed into a fresh virtualenv, answers ``cascade search`` from outside the checkout.

No network: the wheel is built without build isolation (the virtualenv's setuptools) and installed with
``--no-deps``; the fresh virtualenv sees the running virtualenv's pinned packages through a ``.pth`` line.
"""

from __future__ import annotations

import email.parser
import json
import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.conftest import ROOT

pytestmark = pytest.mark.slow

OWN_PACKAGES = {"analysis", "cascade", "cascade_cli", "cascade_ui"}


def _checkout_copy(target: Path) -> Path:
    """The working tree's files (tracked, and untracked but not ignored) copied to ``target``.

    setuptools builds in the source tree (``build/lib``, ``*.egg-info``): a stale ``build/lib`` from an older layout
    would slip removed packages into the wheel, and the build would litter the checkout. A copy has neither.
    """
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        check=True,
    ).stdout.decode()
    for name in filter(None, listed.split("\0")):
        source = ROOT / name
        if source.is_file():  # a file deleted but not yet staged is listed and absent
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / name)
    return target


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("wheel")
    source = _checkout_copy(tmp / "src")
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "--no-index",
            "-w",
            str(tmp / "dist"),
            str(source),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    (built,) = (tmp / "dist").glob("cascade_search-*.whl")
    return built


def _names(wheel: Path) -> list[str]:
    with zipfile.ZipFile(wheel) as archive:
        return archive.namelist()


def _metadata(wheel: Path) -> email.message.Message:
    with zipfile.ZipFile(wheel) as archive:
        (path,) = [n for n in archive.namelist() if n.endswith(".dist-info/METADATA")]
        return email.parser.Parser().parsestr(archive.read(path).decode())


def test_the_wheel_holds_only_the_projects_own_top_level_names(wheel):
    names = _names(wheel)
    top = {name.split("/")[0] for name in names if not name.split("/")[0].endswith(".dist-info")}
    assert top == OWN_PACKAGES  # no cli, ui, tools, bench, tests, assets, app.py
    with zipfile.ZipFile(wheel) as archive:
        (top_level,) = [n for n in archive.namelist() if n.endswith(".dist-info/top_level.txt")]
        assert set(archive.read(top_level).decode().split()) == OWN_PACKAGES


def test_the_wheel_holds_the_weights_and_the_package_data(wheel):
    names = set(_names(wheel))
    checkout = {
        path.relative_to(ROOT).as_posix()
        for pattern in (
            "cascade/assets/shapes_*.safetensors",
            "cascade/assets/shapes_family.json",
            "analysis/data/*",
            "cascade/encoders/openclip_configs/*.json",
        )
        for path in ROOT.glob(pattern)
        if path.is_file()
    }
    weights = {name for name in checkout if name.endswith(".safetensors")}
    assert {f"cascade/assets/shapes_{m}.safetensors" for m in ("small", "medium", "large", "cross", "text")} <= weights
    assert any(name.startswith("analysis/data/") for name in checkout)
    assert any(name.startswith("cascade/encoders/openclip_configs/") for name in checkout)
    assert checkout - names == set()
    with zipfile.ZipFile(wheel) as archive:  # the weights themselves, not empty stand-ins
        for name in weights:
            assert archive.getinfo(name).file_size == (ROOT / name).stat().st_size


def _pins() -> dict[str, str]:
    pins = {}
    for line in (ROOT / "requirements.txt").read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            requirement = Requirement(line)
            (spec,) = requirement.specifier
            assert spec.operator == "==", f"requirements.txt pins exactly: {line}"
            pins[canonicalize_name(requirement.name)] = spec.version
    return pins


def test_the_declared_dependencies_admit_the_exact_pins(wheel):
    declared = {}
    for line in _metadata(wheel).get_all("Requires-Dist") or []:
        requirement = Requirement(line)
        assert requirement.marker is None and not requirement.extras, line  # no extra or marker hides a dependency
        declared[canonicalize_name(requirement.name)] = requirement.specifier
    pins = _pins()
    assert len(pins) >= 10 and set(declared) == set(pins)
    refused = {
        name: (str(declared[name]), version)
        for name, version in pins.items()
        if not declared[name].contains(version, prereleases=True)
    }
    assert refused == {}
    unbounded_torch = [spec for spec in declared["torch"] if spec.operator in ("<", "<=", "==", "~=")]
    assert unbounded_torch, "torch needs an upper bound: an unbounded torch pulls a multi-GB CUDA build"


def _purelib(python: Path) -> Path:
    out = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return Path(out.strip())


@pytest.fixture(scope="module")
def installed(wheel, tmp_path_factory) -> tuple[Path, Path]:
    """A fresh virtualenv with the wheel (``--no-deps``) that sees this virtualenv's packages: (its bin, its purelib).

    The ``.pth`` line adds this virtualenv's site-packages as a plain directory: the ``.pth`` files *inside* it,
    among them the editable install's finder of the checkout, are not processed.
    """
    venv = tmp_path_factory.mktemp("venv") / "v"
    base = Path(getattr(sys, "_base_executable", sys.executable))
    subprocess.run([str(base), "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    purelib = _purelib(python)
    (purelib / "project_venv.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    done = subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "--no-index", str(wheel)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    return venv / "bin", purelib


def _env(tmp: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")}
    return {**env, "HF_HUB_OFFLINE": "1", "CASCADE_CACHE_DIR": str(tmp / "cache")}


WHERE = """
import importlib.util, json, sys
print(json.dumps({
    "modules": {name: importlib.util.find_spec(name).origin for name in ("cascade", "analysis", "cascade_cli",
                                                                          "cascade_ui")},
    "torch": importlib.util.find_spec("torch").origin,
    "finders": [type(f).__name__ + " " + getattr(f, "__module__", "") for f in sys.meta_path],
    "editable": sorted(name for name in sys.modules if "editable" in name),
}))
"""


def test_the_installed_modules_come_from_the_fresh_virtualenv_not_the_checkout(installed, tmp_path):
    bin_dir, purelib = installed
    cwd = tmp_path / "elsewhere"
    cwd.mkdir()
    done = subprocess.run(
        [str(bin_dir / "python"), "-c", WHERE], cwd=cwd, env=_env(tmp_path), capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-3000:]
    where = json.loads(done.stdout)
    for name, origin in where["modules"].items():
        assert Path(origin) == purelib / name / "__init__.py"
    assert Path(where["torch"]).is_relative_to(Path(sysconfig.get_paths()["purelib"]))  # the pins, seen via .pth
    assert where["editable"] == [] and not any("editable" in finder for finder in where["finders"])


def test_the_installed_script_answers_a_search_on_the_default_preset(installed, tmp_path):
    bin_dir, purelib = installed
    cwd = tmp_path / "elsewhere"
    cwd.mkdir()
    command = [
        str(bin_dir / "cascade"),
        "search",
        "a blue circle",
        "--json",
        "--quiet",
        "--db",
        str(tmp_path / "x.duckdb"),
    ]
    done = subprocess.run(command, cwd=cwd, env=_env(tmp_path), capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    (line,) = [line for line in done.stdout.splitlines() if line.startswith("{")]
    payload = json.loads(line)
    assert payload["query"] == "a blue circle"
    results = payload["levels"][-1]["results"]
    assert len(results) >= 10 and all(Path(r["path"]).is_file() for r in results)
    # The gallery was materialised under CASCADE_CACHE_DIR, not in the checkout.
    assert all(Path(r["path"]).is_relative_to(tmp_path / "cache") for r in results)
    assert payload["levels"][0]["candidates"] == 5_000  # the default preset's test gallery
