"""Local bundling: pip for the Lambda platform, a cache keyed by what was asked, no Docker fallback."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
from aws_cdk import App, Stack
from aws_cdk import aws_lambda as lambda_

from infra import bundling
from infra.bundling import (
    BundlingError,
    build_code,
    dependency_key,
    function_code,
    installed_dependencies,
    runtime_dependencies,
)
from infra.constants import PIP_PLATFORM, PYPROJECT, PYTHON_VERSION


def _pip_must_not_run(*args: Any, **kwargs: Any) -> Any:
    raise AssertionError("pip ran although the dependencies were cached")


def _cached(cache: Path, requirements: list[str]) -> Path:
    """A cache entry as installed_dependencies leaves it."""
    entry = cache / dependency_key(requirements)
    (entry / "somelib").mkdir(parents=True)
    (entry / "somelib" / "__init__.py").write_text("VERSION = 1\n")
    return entry


def test_the_runtime_dependencies_are_read_from_pyproject(tmp_path: Path) -> None:
    # Given a pyproject with runtime dependencies and development extras
    pyproject = tmp_path / "pyproject.toml"
    pyproject.write_text(
        '[project]\nname = "x"\ndependencies = ["boto3>=1.34", "jinja2>=3.1"]\n'
        '[project.optional-dependencies]\ndev = ["pytest"]\n'
    )
    # Then only the runtime ones are bundled
    assert runtime_dependencies(pyproject) == ["boto3>=1.34", "jinja2>=3.1"]


def test_the_repository_bundles_what_pyproject_declares() -> None:
    requirements = runtime_dependencies(PYPROJECT)
    assert any(r.startswith("aws-lambda-powertools") for r in requirements)
    assert not any(r.startswith(("pytest", "moto", "aws-cdk-lib")) for r in requirements)


def test_the_cache_key_changes_with_the_requirements_but_not_their_order() -> None:
    assert dependency_key(["a>=1", "b>=2"]) == dependency_key(["b>=2", "a>=1"])
    assert dependency_key(["a>=1", "b>=2"]) != dependency_key(["a>=1", "b>=3"])


def test_cached_dependencies_are_reused_without_running_pip(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given dependencies installed by an earlier synth
    entry = _cached(tmp_path, ["somelib>=1"])
    monkeypatch.setattr(subprocess, "run", _pip_must_not_run)
    # When they are asked for again
    # Then the cached directory is used as is
    assert installed_dependencies(["somelib>=1"], cache=tmp_path) == entry


def test_pip_is_asked_for_lambda_wheels_only(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Given a pip that records its command and installs one module
    commands: list[list[str]] = []

    def fake_pip(command: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
        commands.append(command)
        target = Path(command[command.index("--target") + 1])
        (target / "somelib").mkdir()
        (target / "bin").mkdir()  # console scripts pip writes for the host
        return subprocess.CompletedProcess(command, 0, "", "")

    monkeypatch.setattr(subprocess, "run", fake_pip)
    # When the dependencies are installed
    installed = installed_dependencies(["somelib>=1"], cache=tmp_path)
    # Then pip installed binary wheels for the Lambda platform and Python, without byte code
    (command,) = commands
    assert command[command.index("--platform") + 1] == PIP_PLATFORM
    assert command[command.index("--python-version") + 1] == PYTHON_VERSION
    assert command[command.index("--implementation") + 1] == "cp"
    assert "--only-binary=:all:" in command
    assert "--no-compile" in command
    assert command[-1] == "somelib>=1"
    # And the result is cached under the key, host scripts removed, no staging left behind
    assert installed == tmp_path / dependency_key(["somelib>=1"])
    assert sorted(p.name for p in installed.iterdir()) == ["somelib"]
    assert sorted(p.name for p in tmp_path.iterdir()) == [installed.name]


def test_a_pip_failure_stops_the_bundling_with_pips_message(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def failing_pip(command: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
        return subprocess.CompletedProcess(command, 1, "", "ERROR: No matching distribution found for nolib")

    monkeypatch.setattr(subprocess, "run", failing_pip)
    with pytest.raises(BundlingError, match="No matching distribution found for nolib"):
        installed_dependencies(["nolib>=1"], cache=tmp_path)
    assert list(tmp_path.iterdir()) == []  # nothing half-installed is cached


def test_the_code_layout_is_dependencies_then_functions_without_caches_or_tests(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a functions package with byte code, tool caches and a tests folder
    functions = tmp_path / "src" / "functions"
    for relative in ("__init__.py", "api/handler.py", "api/dashboard/index.html"):
        (functions / relative).parent.mkdir(parents=True, exist_ok=True)
        (functions / relative).write_text("x\n")
    for junk in (
        "api/__pycache__/handler.cpython-311.pyc",
        ".pytest_cache/v",
        "tests/test_x.py",
        "stale.pyc",
    ):
        (functions / junk).parent.mkdir(parents=True, exist_ok=True)
        (functions / junk).write_text("junk\n")
    cache = tmp_path / "cache"
    _cached(cache, ["somelib>=1"])
    monkeypatch.setattr(bundling, "DEPENDENCY_CACHE", cache)
    monkeypatch.setattr(subprocess, "run", _pip_must_not_run)
    # When the asset is built
    out = tmp_path / "out"
    out.mkdir()
    build_code(out, ["somelib>=1"], functions)
    # Then it holds the dependencies at the top level and the functions' sources, nothing else
    files = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    assert files == [
        "functions/__init__.py",
        "functions/api/dashboard/index.html",
        "functions/api/handler.py",
        "somelib/__init__.py",
    ]


def test_a_local_bundling_failure_fails_the_synth_instead_of_trying_docker(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a machine where the dependencies cannot be installed
    def no_dependencies(requirements: list[str], cache: Path | None = None) -> Path:
        raise BundlingError("pip could not install the functions' dependencies (test)")

    monkeypatch.setattr(bundling, "installed_dependencies", no_dependencies)
    app = App(outdir=str(tmp_path / "cdk.out"))
    stack = Stack(app, "BundlingProbe")
    # When a function is given the code asset (CDK bundles while it builds the construct)
    # Then the synth stops with the local bundler's error: Docker is never tried
    with pytest.raises(RuntimeError, match=r"pip could not install the functions' dependencies \(test\)"):
        lambda_.Function(
            stack,
            "Probe",
            code=function_code(),
            handler="functions.api.handler.lambda_handler",
            runtime=lambda_.Runtime.PYTHON_3_12,
        )
        app.synth()
