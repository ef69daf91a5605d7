"""The one code asset of the three functions: ``functions/`` plus its runtime dependencies.

Bundled on this machine, never in Docker: pip fetches the manylinux aarch64 wheels for the Lambda
Python version (``--only-binary=:all:``, so nothing is compiled for the wrong platform). The installed
dependencies are cached under ``.cache/lambda-deps/<hash of what was asked for>/``, so a repeated
synth only copies files. Delete that folder to pick up newer releases within pyproject's ranges.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path
from typing import Any

import jsii
from aws_cdk import AssetHashType, BundlingOptions, DockerImage, ILocalBundling
from aws_cdk import aws_lambda as lambda_

from infra.constants import FUNCTIONS_DIR, PIP_PLATFORM, PYPROJECT, PYTHON_VERSION, REPO_ROOT

DEPENDENCY_CACHE = REPO_ROOT / ".cache" / "lambda-deps"
# Never pulled: the local bundler either succeeds or stops the synth with its error.
NO_DOCKER_IMAGE = "msgtrack/local-bundling-only:never-pulled"
# What never belongs in a function: tests, byte code and tool caches.
EXCLUDED_FROM_CODE = (
    "__pycache__",
    "*.pyc",
    "tests",
    ".pytest_cache",
    ".mypy_cache",
    ".ruff_cache",
    ".hypothesis",
)


class BundlingError(RuntimeError):
    """The code asset could not be built locally (and Docker is no fallback)."""


def runtime_dependencies(pyproject: Path = PYPROJECT) -> list[str]:
    """The ``[project] dependencies`` of pyproject.toml: what the functions import at run time."""
    with pyproject.open("rb") as file:
        return list(tomllib.load(file)["project"]["dependencies"])


def dependency_key(requirements: list[str]) -> str:
    """Names a dependency set: the requirements and the platform they are installed for."""
    identity = {"requirements": sorted(requirements), "python": PYTHON_VERSION, "platform": PIP_PLATFORM}
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:16]


def installed_dependencies(requirements: list[str], cache: Path | None = None) -> Path:
    """A directory holding ``requirements`` installed for the Lambda platform (built once, then cached)."""
    cache = cache or DEPENDENCY_CACHE
    target = cache / dependency_key(requirements)
    if target.is_dir():
        return target
    cache.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix="installing-", dir=cache))
    command = [
        sys.executable,
        "-m",
        "pip",
        "install",
        "--quiet",
        "--disable-pip-version-check",
        "--no-compile",  # byte code would be for this interpreter, not the Lambda one
        "--platform",
        PIP_PLATFORM,
        "--implementation",
        "cp",
        "--python-version",
        PYTHON_VERSION,
        "--only-binary=:all:",
        "--target",
        str(staging),
        *requirements,
    ]
    # The command is built from pyproject.toml and constants, never from outside input.
    result = subprocess.run(command, capture_output=True, text=True, check=False)  # noqa: S603
    if result.returncode != 0:
        shutil.rmtree(staging, ignore_errors=True)
        raise BundlingError(
            f"pip could not install the functions' dependencies for {PIP_PLATFORM} / Python "
            f"{PYTHON_VERSION}:\n{result.stderr.strip()}"
        )
    shutil.rmtree(staging / "bin", ignore_errors=True)  # console scripts: host shebangs, never run
    try:
        staging.rename(target)
    except OSError:
        # Another synth finished the same set first: theirs is identical, keep it.
        shutil.rmtree(staging, ignore_errors=True)
    return target


def build_code(output_dir: Path, requirements: list[str], functions_dir: Path = FUNCTIONS_DIR) -> None:
    """Lay out the asset: dependencies at the top level, then the ``functions`` package."""
    shutil.copytree(installed_dependencies(requirements), output_dir, dirs_exist_ok=True)
    shutil.copytree(
        functions_dir,
        output_dir / "functions",
        ignore=shutil.ignore_patterns(*EXCLUDED_FROM_CODE),
        dirs_exist_ok=True,
    )


@jsii.implements(ILocalBundling)
class LocalBundling:
    """CDK's local bundling hook: build the asset here, or fail the synth with the reason."""

    def __init__(self, pyproject: Path = PYPROJECT, functions_dir: Path = FUNCTIONS_DIR) -> None:
        self._pyproject = pyproject
        self._functions_dir = functions_dir

    # jsii passes the BundlingOptions struct as keyword arguments; only the output path matters here.
    def try_bundle(self, output_dir: str, *, image: DockerImage, **_options: Any) -> bool:
        build_code(Path(output_dir), runtime_dependencies(self._pyproject), self._functions_dir)
        return True


def function_code() -> lambda_.Code:
    """The code asset shared by every function (its hash is that of the bundled output)."""
    return lambda_.Code.from_asset(
        str(FUNCTIONS_DIR),
        asset_hash_type=AssetHashType.OUTPUT,
        exclude=list(EXCLUDED_FROM_CODE),
        bundling=BundlingOptions(image=DockerImage.from_registry(NO_DOCKER_IMAGE), local=LocalBundling()),
    )
