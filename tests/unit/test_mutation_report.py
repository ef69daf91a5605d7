"""The mutation-testing section of RELIABILITY.md, from mutmut's verdicts (tests/mutation_report.py)."""

from __future__ import annotations

import pytest

from tests.mutation_report import module_of, render, replace_section

VERDICTS = {
    "functions.shared.tokens.x_key_id__mutmut_1": "killed",
    "functions.shared.tokens.x_key_id__mutmut_2": "killed",
    "functions.shared.tokens.x_key_id__mutmut_3": "timeout",
    "functions.shared.tokens.xǁSignerǁsign__mutmut_15": "survived",
    "functions.api.cursors.x_decode__mutmut_4": "survived",
    "functions.api.cursors.x_decode__mutmut_5": "no tests",
}


def test_a_mutant_belongs_to_the_module_before_its_function() -> None:
    assert module_of("functions.shared.tokens.xǁSignerǁverify__mutmut_4") == "functions.shared.tokens"
    assert module_of("functions.api.cursors.x__key__mutmut_4") == "functions.api.cursors"


def test_the_section_counts_each_module_and_lists_every_survivor_with_its_explanation() -> None:
    # Given 6 verdicts over two modules and the explanation of one survivor
    explained = {"functions.shared.tokens.xǁSignerǁsign__mutmut_15": "json treats None as false."}
    # When the section is rendered
    section = render(VERDICTS, explained, seconds=600)
    # Then a timeout counts as killed, "no tests" as survived, and the totals add up; the kill rate is
    # killed / mutants, the score leaves out the survivors explained as equivalent: killed / (mutants -
    # equivalent)
    assert "| `functions.api.cursors` | 2 | 0 | 2 | 0 | 0.0 % | 0.0 % |" in section
    assert "| `functions.shared.tokens` | 4 | 3 | 1 | 1 | 75.0 % | 100.0 % |" in section
    assert "| **all** | **6** | **3** | **3** | **1** | **50.0 %** | **60.0 %** |" in section
    assert "the run took 10 min" in section
    # And every survivor is listed; those without an explanation say a test is missing
    assert "### Survivors (3, 2 without an explanation)" in section
    assert "- `xǁSignerǁsign__mutmut_15` (survived): json treats None as false." in section
    assert "- `x_decode__mutmut_5` (no tests): **not explained" in section


def test_an_interrupted_run_is_not_reported() -> None:
    with pytest.raises(SystemExit, match="not checked"):
        render({**VERDICTS, "functions.api.cursors.x_decode__mutmut_9": "not checked"}, {})


def test_the_section_replaces_the_previous_one_and_keeps_what_follows() -> None:
    document = "# RELIABILITY\n\n## Faults\n\nrow\n\n## Mutation testing\n\nold\n\n## Later\n\nkept\n"
    replaced = replace_section(document, "## Mutation testing\n\nnew\n")
    assert replaced == "# RELIABILITY\n\n## Faults\n\nrow\n\n## Mutation testing\n\nnew\n\n## Later\n\nkept\n"
    appended = replace_section("# RELIABILITY\n\n## Faults\n", "## Mutation testing\n\nnew\n")
    assert appended == "# RELIABILITY\n\n## Faults\n\n## Mutation testing\n\nnew\n"
    assert replace_section(appended, "## Mutation testing\n\nnewer\n").endswith("newer\n")


def test_a_partial_run_reports_what_it_checked_and_says_so() -> None:
    section = render(
        {**VERDICTS, "functions.api.cursors.x_decode__mutmut_9": "not checked"}, {}, partial=True
    )
    assert "**Partial run: 1 mutants not checked yet**" in section
    assert "| `functions.api.cursors` | 2 | 0 | 2 | 0 | 0.0 % | 0.0 % | 1 |" in section
    assert "| **all** | **6** | **3** | **3** | **0** | **50.0 %** | **50.0 %** | **1** |" in section


def test_an_explanation_of_a_killed_mutant_does_not_count_as_equivalent() -> None:
    # Given an explanation left over for a mutant that a new test now kills
    explained = {"functions.shared.tokens.x_key_id__mutmut_1": "was thought equivalent."}
    # When the section is rendered
    section = render(VERDICTS, explained)
    # Then only survivors count as equivalent
    assert "| `functions.shared.tokens` | 4 | 3 | 1 | 0 | 75.0 % | 75.0 % |" in section
