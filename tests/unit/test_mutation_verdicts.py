"""mutmut's verdicts kept in git between runs (tests/mutation_verdicts.py)."""

from __future__ import annotations

import json
from pathlib import Path

from tests.mutation_verdicts import restore, save, statuses

BATCH = "functions/consolidate/batch.py"
META = {
    "exit_code_by_key": {
        "functions.consolidate.batch.x__bump__mutmut_1": 1,
        "functions.consolidate.batch.x__bump__mutmut_2": 0,
        "functions.consolidate.batch.x__bump__mutmut_3": None,
        "functions.consolidate.batch.xǁ_Stateǁstats__mutmut_10": 0,
        "functions.consolidate.batch.xǁ_Stateǁstats__mutmut_11": -24,
    },
    "hash_by_function_name": {
        "x__bump": "aaaaaaaaaaaa",
        "xǁ_Stateǁstats": "bbbbbbbbbbbb",
        "x_other": "cccccccccccc",
    },
    "type_check_error_by_key": {},
    "durations_by_key": {"functions.consolidate.batch.x__bump__mutmut_1": 0.5},
    "estimated_durations_by_key": {},
}


def _write(path: Path, data: object) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))


def test_saved_verdicts_come_back_as_the_meta_mutmut_reads(tmp_path: Path) -> None:
    # Given a run's meta for batch.py, and verdicts kept from an earlier run of another module
    _write(tmp_path / "run" / (BATCH + ".meta"), META)
    kept = tmp_path / "verdicts.json"
    cursors = {
        "module": "functions.api.cursors",
        "functions": {"x_decode": {"hash": "d" * 12, "exit_codes": {"4": 0}}},
    }
    _write(kept, {"functions/api/cursors.py": cursors})
    # When the run's verdicts are saved and then restored into a new, empty mutants directory
    save(tmp_path / "run", kept)
    restored = restore(tmp_path / "fresh", kept)
    # Then every verdict is back under its key, with its function's hash (an undecided one too, as None:
    # mutmut checks it); the other module is kept too
    meta = json.loads((tmp_path / "fresh" / (BATCH + ".meta")).read_text())
    assert meta["exit_code_by_key"] == {
        "functions.consolidate.batch.x__bump__mutmut_1": 1,
        "functions.consolidate.batch.x__bump__mutmut_2": 0,
        "functions.consolidate.batch.x__bump__mutmut_3": None,
        "functions.consolidate.batch.xǁ_Stateǁstats__mutmut_10": 0,
        "functions.consolidate.batch.xǁ_Stateǁstats__mutmut_11": -24,
    }
    assert meta["hash_by_function_name"] == {"x__bump": "aaaaaaaaaaaa", "xǁ_Stateǁstats": "bbbbbbbbbbbb"}
    assert meta["durations_by_key"] == {} and meta["estimated_durations_by_key"] == {}
    other = json.loads((tmp_path / "fresh" / "functions/api/cursors.py.meta").read_text())
    assert other["exit_code_by_key"] == {"functions.api.cursors.x_decode__mutmut_4": 0}
    assert restored == 6


def test_nothing_to_restore_without_kept_verdicts(tmp_path: Path) -> None:
    assert restore(tmp_path / "mutants", tmp_path / "missing.json") == 0
    assert not (tmp_path / "mutants").exists()


def test_survivors_and_named_mutants_can_be_left_out_to_be_checked_again(tmp_path: Path) -> None:
    # Given kept verdicts of batch.py: a killed mutant, two survivors, a timeout
    _write(tmp_path / "run" / (BATCH + ".meta"), META)
    kept = tmp_path / "verdicts.json"
    save(tmp_path / "run", kept)
    # When they are restored leaving out the survivors and one named mutant
    named = "functions.consolidate.batch.x__bump__mutmut_1"
    restore(tmp_path / "fresh", kept, recheck=[named], recheck_survivors=True)
    # Then only the timeout is kept, with the mutant never checked: mutmut checks the others again
    meta = json.loads((tmp_path / "fresh" / (BATCH + ".meta")).read_text())
    assert meta["exit_code_by_key"] == {
        "functions.consolidate.batch.x__bump__mutmut_3": None,
        "functions.consolidate.batch.xǁ_Stateǁstats__mutmut_11": -24,
    }


def test_the_report_reads_each_kept_mutants_status(tmp_path: Path) -> None:
    # Given kept verdicts of batch.py
    _write(tmp_path / "run" / (BATCH + ".meta"), META)
    kept = tmp_path / "verdicts.json"
    save(tmp_path / "run", kept)
    # When their statuses are read, Then each is mutmut's name for its exit code
    assert statuses(kept) == {
        "functions.consolidate.batch.x__bump__mutmut_1": "killed",
        "functions.consolidate.batch.x__bump__mutmut_2": "survived",
        "functions.consolidate.batch.x__bump__mutmut_3": "not checked",
        "functions.consolidate.batch.xǁ_Stateǁstats__mutmut_10": "survived",
        "functions.consolidate.batch.xǁ_Stateǁstats__mutmut_11": "timeout",
    }
