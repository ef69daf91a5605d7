"""The three functions: one code asset (functions/ + dependencies, nothing else), Python on arm64,
Powertools settings, and a log group with retention each."""

from __future__ import annotations

import json
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from infra.constants import (
    ACCOUNT_CONCURRENCY_LIMIT,
    API_RESERVED_CONCURRENCY,
    HANDLERS,
    LOG_LEVEL,
    METRICS_NAMESPACE,
    PIP_PLATFORM,
    PYPROJECT,
    PYTHON_VERSION,
    REDIRECT_RESERVED_CONCURRENCY,
    SERVICE_NAME,
)
from tests.infrastructure.synth import NO_BUNDLING, Synthesized, cdk_json_context, environment

FUNCTION_NAMES = ("redirect", "consolidate", "api")


def _function(synthesized: Synthesized, name: str) -> Any:
    stack = synthesized.stack
    owners: dict[str, Any] = {"redirect": stack.redirect, "consolidate": stack.workflow, "api": stack.reports}
    return owners[name].handler


def _properties(synthesized: Synthesized, name: str) -> dict[str, Any]:
    return dict(
        synthesized.resources[synthesized.logical_id(_function(synthesized, name).function)]["Properties"]
    )


def _asset_dir(synthesized: Synthesized) -> Path:
    keys = {_properties(synthesized, name)["Code"]["S3Key"] for name in FUNCTION_NAMES}
    assert len(keys) == 1, f"the functions should share one code asset, got {keys}"
    asset = synthesized.outdir / f"asset.{keys.pop().removesuffix('.zip')}"
    assert asset.is_dir(), f"{asset} was not bundled"
    return asset


def _import_name(requirement: str) -> str:
    """The top-level module a requirement installs (for the dependencies msgtrack uses)."""
    project = requirement.split(";")[0].split("[")[0]
    for operator in ("=", ">", "<", "~", "!", " "):
        project = project.split(operator)[0]
    known = {"aws-lambda-powertools": "aws_lambda_powertools", "ua-parser": "ua_parser"}
    return known.get(project.lower(), project.lower().replace("-", "_"))


@pytest.mark.parametrize("name", FUNCTION_NAMES)
def test_every_function_runs_its_handler_on_python_arm64(synthesized: Synthesized, name: str) -> None:
    properties = _properties(synthesized, name)
    assert properties["Handler"] == HANDLERS[name]
    assert properties["Runtime"] == f"python{PYTHON_VERSION}"
    assert properties["Architectures"] == ["arm64"]
    assert PIP_PLATFORM.endswith("aarch64")  # the wheels bundled for that architecture


@pytest.mark.parametrize("name", FUNCTION_NAMES)
def test_every_function_logs_to_its_own_log_group_with_retention(synthesized: Synthesized, name: str) -> None:
    handler = _function(synthesized, name)
    log_group_id = synthesized.logical_id(handler.log_group)
    assert _properties(synthesized, name)["LoggingConfig"] == {"LogGroup": {"Ref": log_group_id}}
    assert synthesized.resources[log_group_id]["Properties"]["RetentionInDays"] == 30


@pytest.mark.parametrize("name", FUNCTION_NAMES)
def test_every_function_logs_and_measures_with_powertools_under_one_service(
    synthesized: Synthesized, name: str
) -> None:
    variables = environment(synthesized, _function(synthesized, name).function)
    assert variables["POWERTOOLS_SERVICE_NAME"] == SERVICE_NAME
    assert variables["POWERTOOLS_METRICS_NAMESPACE"] == METRICS_NAMESPACE
    assert variables["LOG_LEVEL"] == LOG_LEVEL
    assert "POWERTOOLS_METRICS_DISABLED" not in variables


def test_the_functions_handlers_exist_in_the_bundled_code(synthesized: Synthesized) -> None:
    asset = _asset_dir(synthesized)
    for handler in HANDLERS.values():
        module, _, function = handler.rpartition(".")
        source = asset / (module.replace(".", "/") + ".py")
        assert source.is_file(), source
        assert f"def {function}(" in source.read_text()


def test_the_asset_carries_functions_exactly_as_in_the_repository(synthesized: Synthesized) -> None:
    # Given the asset the three functions share
    asset = _asset_dir(synthesized)
    # Then its functions/ package is the repository's, file for file, without caches or tests
    bundled = {p.relative_to(asset).as_posix() for p in (asset / "functions").rglob("*") if p.is_file()}
    assert bundled == synthesized.source_files


def test_the_asset_carries_every_runtime_dependency_built_for_lambda(synthesized: Synthesized) -> None:
    asset = _asset_dir(synthesized)
    with PYPROJECT.open("rb") as file:
        requirements = tomllib.load(file)["project"]["dependencies"]
    for requirement in requirements:
        assert (asset / _import_name(requirement)).is_dir(), requirement
    # compiled extensions are the Lambda's, not this machine's
    extensions = list(asset.glob("pydantic_core/*.so"))
    assert extensions
    assert all(f"cpython-{PYTHON_VERSION.replace('.', '')}-aarch64-linux-gnu" in so.name for so in extensions)


def test_the_asset_holds_no_tests_caches_virtualenv_or_tooling(synthesized: Synthesized) -> None:
    asset = _asset_dir(synthesized)
    unwanted = {
        "tests",
        ".venv",
        "__pycache__",
        ".pytest_cache",
        ".mypy_cache",
        ".ruff_cache",
        ".hypothesis",
        "cdk.out",
        "node_modules",
        "infra",
        "local",
        ".cache",
        "bin",
    }
    found = [p for p in asset.rglob("*") if p.name in unwanted or p.suffix == ".pyc"]
    assert found == []
    top_level_packages = {p.name for p in asset.iterdir() if p.is_dir() and not p.name.endswith(".dist-info")}
    assert "functions" in top_level_packages


def test_the_cloud_assembly_lists_the_asset_as_a_zip_of_that_directory(synthesized: Synthesized) -> None:
    manifest = json.loads((synthesized.outdir / "msgtrack.assets.json").read_text())
    asset = _asset_dir(synthesized)
    sources = [file["source"] for file in manifest["files"].values()]
    assert {"path": asset.name, "packaging": "zip"} in sources


def test_the_redirect_keeps_its_concurrency_and_the_api_is_held_to_its_own(synthesized: Synthesized) -> None:
    # Given the deployed functions' reserved concurrency
    redirect = _properties(synthesized, "redirect").get("ReservedConcurrentExecutions")
    api = _properties(synthesized, "api").get("ReservedConcurrentExecutions")
    workflow = _properties(synthesized, "consolidate").get("ReservedConcurrentExecutions")

    # Then the redirect is guaranteed 200 executions, the API can never use more than 20, the workflow
    # uses the unreserved pool, and the default account limit leaves Lambda its 100 unreserved
    assert (redirect, api, workflow) == (REDIRECT_RESERVED_CONCURRENCY, API_RESERVED_CONCURRENCY, None)
    assert (redirect, api) == (200, 20)
    assert redirect + api + 100 <= ACCOUNT_CONCURRENCY_LIMIT


def test_the_reservations_are_set_from_context_values_and_0_reserves_nothing(
    synthesize_variant: Callable[..., Synthesized],
) -> None:
    # Given an account with a small concurrency limit: the redirect reserves 50, the API nothing
    synthesized = synthesize_variant(redirect_reserved_concurrency="50", api_reserved_concurrency="0")

    # Then the template reserves exactly that
    assert _properties(synthesized, "redirect").get("ReservedConcurrentExecutions") == 50
    assert "ReservedConcurrentExecutions" not in _properties(synthesized, "api")


@pytest.mark.parametrize(
    "context", [{"redirect_reserved_concurrency": "-1"}, {"api_reserved_concurrency": "x"}]
)
def test_a_reservation_that_is_no_whole_number_of_0_or_more_stops_the_synth(context: dict[str, str]) -> None:
    from infra.app import build_app
    from infra.http_api import ConfigurationError

    with pytest.raises(ConfigurationError, match="reserved_concurrency"):
        build_app({**cdk_json_context(), **NO_BUNDLING, **context})
