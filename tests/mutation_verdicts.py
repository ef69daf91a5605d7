"""mutmut's verdicts kept in git, so that `make mutation` goes on where the last run stopped.

mutmut keeps a verdict per mutant in ``mutants/<source>.meta``, beside a hash of each mutated
function, and on its next run checks again only the mutants of functions whose code changed and those
never checked. ``mutants/`` is not in git and every checkout starts without it, while a run over every
module outlasts a working session on two cores (a surviving workflow mutant runs every workflow
test): so its verdicts are saved in ``tests/mutation_verdicts.json`` and put back before the next run.

A verdict is kept only while its function's code is the one it was given for (mutmut's own hash of
the function). Tests added since can only kill more, so a kept survivor errs on the safe side; a
test removed or weakened is not noticed: ``make mutation FRESH=1`` checks every mutant again.

    python -m tests.mutation_verdicts save      # mutants/*.meta -> tests/mutation_verdicts.json
    python -m tests.mutation_verdicts restore   # tests/mutation_verdicts.json -> mutants/*.meta
        [--recheck-survivors] [--recheck MUTANT ...]  # left out, to be checked again
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
VERDICTS = ROOT / "tests" / "mutation_verdicts.json"
MUTANTS = ROOT / "mutants"
_MARK = "__mutmut_"


def _function_of(key: str) -> tuple[str, str]:
    """``functions.consolidate.batch.x__bump__mutmut_14`` -> (``x__bump``, ``14``)."""
    name, _, number = key.partition(_MARK)
    return name.rpartition(".")[2], number


def compact(meta: dict[str, Any]) -> dict[str, Any]:
    """One source file's meta as kept in git: per function its hash and its mutants' exit codes (None:
    not checked yet, kept so the report knows how many are left)."""
    hashes: dict[str, str] = meta.get("hash_by_function_name", {})
    functions: dict[str, dict[str, Any]] = {}
    for key, code in meta["exit_code_by_key"].items():
        function, number = _function_of(key)
        if function not in hashes:
            continue  # mutmut drops it (its function is gone)
        kept = functions.setdefault(function, {"hash": hashes[function], "exit_codes": {}})
        kept["exit_codes"][number] = code
    return {
        "module": _module_of(meta),
        "functions": {name: functions[name] for name in sorted(functions)},
    }


def expand(kept: dict[str, Any]) -> dict[str, Any]:
    """The meta mutmut reads back (no durations: mutmut measures them again)."""
    module = kept["module"]
    return {
        "exit_code_by_key": {
            f"{module}.{function}{_MARK}{number}": code
            for function, data in kept["functions"].items()
            for number, code in data["exit_codes"].items()
        },
        "hash_by_function_name": {function: data["hash"] for function, data in kept["functions"].items()},
        "type_check_error_by_key": {},
        "durations_by_key": {},
        "estimated_durations_by_key": {},
    }


def _module_of(meta: dict[str, Any]) -> str:
    for key in meta["exit_code_by_key"]:
        return key.partition(_MARK)[0].rpartition(".")[0]
    return ""


def save(mutants: Path = MUTANTS, verdicts: Path = VERDICTS) -> dict[str, Any]:
    """Every meta under ``mutants`` into ``verdicts``, keeping the files this run did not mutate."""
    kept: dict[str, Any] = json.loads(verdicts.read_text()) if verdicts.exists() else {}
    for meta_path in sorted(mutants.rglob("*.py.meta")):
        source = meta_path.relative_to(mutants).as_posix().removesuffix(".meta")
        meta = json.loads(meta_path.read_text())
        if meta["exit_code_by_key"]:
            kept[source] = compact(meta)
    verdicts.write_text(json.dumps(dict(sorted(kept.items())), indent=1, sort_keys=False) + "\n")
    return kept


def restore(
    mutants: Path = MUTANTS,
    verdicts: Path = VERDICTS,
    recheck: Iterable[str] = (),
    recheck_survivors: bool = False,
) -> int:
    """Write a meta for every kept source file; the number of verdicts put back. The mutants named in
    ``recheck`` (and with ``recheck_survivors`` every survivor: tests were added since) are left out,
    for mutmut to check again."""
    if not verdicts.exists():
        return 0
    again = set(recheck)
    restored = 0
    for source, kept in json.loads(verdicts.read_text()).items():
        meta = expand(kept)
        meta["exit_code_by_key"] = {
            key: code
            for key, code in meta["exit_code_by_key"].items()
            if key not in again and not (recheck_survivors and code == 0)
        }
        meta_path = mutants / (source + ".meta")
        meta_path.parent.mkdir(parents=True, exist_ok=True)
        meta_path.write_text(json.dumps(meta))
        restored += len(meta["exit_code_by_key"])
    return restored


def statuses(verdicts: Path = VERDICTS) -> dict[str, str]:
    """``{mutant name: mutmut's status}`` of every kept mutant (``not checked`` for those left)."""
    from mutmut.stats import status_by_exit_code

    if not verdicts.exists():
        return {}
    return {
        key: status_by_exit_code[code]
        for kept in json.loads(verdicts.read_text()).values()
        for key, code in expand(kept)["exit_code_by_key"].items()
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("action", choices=["save", "restore"])
    parser.add_argument("--recheck", nargs="*", default=[], help="mutants to check again (restore)")
    parser.add_argument(
        "--recheck-survivors", action="store_true", help="check every survivor again (restore)"
    )
    arguments = parser.parse_args()
    if arguments.action == "save":
        kept = save()
        print(
            f"{sum(len(f['exit_codes']) for k in kept.values() for f in k['functions'].values())} verdicts saved"
        )
    else:
        restored = restore(recheck=arguments.recheck, recheck_survivors=arguments.recheck_survivors)
        print(f"{restored} verdicts restored into mutants/")


if __name__ == "__main__":
    main()
