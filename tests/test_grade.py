"""The autograder end to end: real servers on free ports, graded by ``chatlab grade``.

The reference server and its asyncio twin must get full marks, and so must the
zoo's correct server, written apart from both (the grader is fair to any server
that keeps PROTOCOL.md). The naive server must fail exactly the checks its seed
bugs break, and every zoo server the category that its planted bug belongs to.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import socket
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from chatlab.cli import main
from chatlab.grade import checks
from chatlab.grade.grader import Grade, GradeError, Rubric, grade, run_check
from chatlab.server import ChatServer
from chatlab.zoo import ZOO

PYTHON_SERVER = "{python} -m chatlab server --impl %s --port {port}"
ZOO_SERVER = "{python} -m chatlab.zoo %s --port {port}"


def assert_gradescope(results: dict, outcomes: int) -> None:
    """Gradescope's results.json: a numeric total score and one test entry per check."""
    assert isinstance(results["score"], int | float)
    assert len(results["tests"]) == outcomes
    for test in results["tests"]:
        assert isinstance(test["name"], str) and test["name"]
        assert isinstance(test["score"], int | float) and isinstance(test["max_score"], int | float)
        assert 0 <= test["score"] <= test["max_score"]
        assert isinstance(test["output"], str)
        assert test["status"] in ("passed", "failed")
    assert results["score"] == pytest.approx(sum(test["score"] for test in results["tests"]))


def expected_score(rubric: Rubric, failing: set[str], categories: list[str]) -> float:
    """The score a server earns when exactly ``failing`` checks fail: computed from the rubric."""
    return sum(points for key, points in rubric.points.items() if key.split(".")[0] in categories and key not in failing)


def test_the_reference_server_gets_full_marks():
    with ChatServer(host="127.0.0.1", port=0) as server:
        result = grade(target=server.address)
    assert result.failed_checks() == [], result.scorecard()
    assert result.score == result.max_score == sum(Rubric.load().points.values())
    assert {outcome.category for outcome in result.outcomes} == set(checks.CATEGORIES)


def test_the_asyncio_twin_gets_full_marks_from_a_command(tmp_path):
    result = grade(command=PYTHON_SERVER % "asyncio")
    assert result.failed_checks() == [], result.scorecard()
    assert any("fresh server" in note for note in result.notes)
    assert "listening on" in result.server_log  # its stderr was captured for the report
    result.write(tmp_path / "results.json", tmp_path / "report.html")
    results = json.loads((tmp_path / "results.json").read_text(encoding="utf-8"))
    assert_gradescope(results, len(result.outcomes))
    assert results["score"] == result.max_score
    page = (tmp_path / "report.html").read_text(encoding="utf-8")
    assert "<script" not in page and "http" not in page.split("<body>")[1]  # self-contained
    assert "departures.reset" in page


def test_a_correct_server_written_apart_gets_full_marks():
    result = grade(command=ZOO_SERVER % "correct")
    assert result.failed_checks() == [], result.scorecard()


# The naive server's seed bugs (chatlab/naive.py) and the checks they must fail.
NAIVE_FAILURES = {
    "handshake.invalid_names",  # it validates nothing
    "handshake.name_taken",  # exact comparison, and it never closes a refused connection
    "handshake.name_then_message",  # bug 7: the name and the first line merge
    "framing.pieces",  # bug 5: each recv() is a message
    "framing.several_in_one",  # bug 5
    "framing.split_utf8",  # bug 6
    "framing.long_cyrillic",  # bugs 5 and 6
}


def test_the_naive_server_fails_what_its_seed_bugs_break():
    categories = ["handshake", "framing"]
    result = grade(command=PYTHON_SERVER % "naive", categories=categories)
    assert set(result.failed_checks()) == NAIVE_FAILURES, result.scorecard()
    assert result.score == expected_score(Rubric.load(), NAIVE_FAILURES, categories)


@pytest.fixture(scope="module")
def zoo_grades() -> dict[str, Grade]:
    """Every zoo server graded on the category its bug belongs to, three at a time."""
    def one(name: str) -> Grade:
        return grade(command=ZOO_SERVER % name, categories=[ZOO[name].category])

    with ThreadPoolExecutor(max_workers=3, thread_name_prefix="zoo-grade") as pool:
        return dict(zip(ZOO, pool.map(one, ZOO), strict=True))


@pytest.mark.parametrize("name", sorted(ZOO))
def test_the_grader_catches_every_zoo_bug_in_its_category(name, zoo_grades):
    result = zoo_grades[name]
    category = ZOO[name].category
    assert result.failed_categories() == {category}, result.scorecard()
    assert result.score < result.max_score
    assert result.score == expected_score(Rubric.load(), set(result.failed_checks()), [category])


def test_a_hung_check_is_named_and_ended():
    with socket.create_server(("127.0.0.1", 0)) as mute:  # accepts connections, never says a word
        welcome = dataclasses.replace(checks.by_key()["handshake.welcome"], timeout=0.5)
        outcome = run_check(welcome, mute.getsockname()[:2], points=1.0, seed=1)
    assert outcome.hung and not outcome.passed and outcome.score == 0
    assert "handshake.welcome hung" in outcome.output


def test_a_server_that_never_listens_is_reported_not_waited_for():
    result = grade(command="{python} -c 'import sys; sys.exit(3)' {port}", categories=["commands"])
    assert result.score == 0
    assert any("exited with status 3 before listening" in note for note in result.notes)
    assert all(outcome.output.startswith("not run:") for outcome in result.outcomes)


def test_rubric_errors_are_clear(tmp_path):
    bad = tmp_path / "rubric.toml"
    bad.write_text("[handshake]\nwelcom = 1\n", encoding="utf-8")
    with pytest.raises(GradeError, match=r"unknown check handshake\.welcom"):
        Rubric.load(bad)
    bad.write_text("[handshake]\nwelcome = -1\n", encoding="utf-8")
    with pytest.raises(GradeError, match="0 or more"):
        Rubric.load(bad)
    bad.write_text("[handshake\n", encoding="utf-8")
    with pytest.raises(GradeError, match="not valid TOML"):
        Rubric.load(bad)


def test_every_check_is_in_the_shipped_rubric():
    assert set(Rubric.load().points) == set(checks.by_key())


def test_cli_usage_errors_exit_2_without_a_traceback(tmp_path, capsys):
    assert main(["grade", "--cmd", "python server.py"]) == 2
    assert "must contain {port}" in capsys.readouterr().err
    assert main(["grade", "--target", "127.0.0.1:1", "--rubric", str(tmp_path / "missing.toml")]) == 2
    assert "cannot read the rubric" in capsys.readouterr().err
    assert main(["grade", "--target", "127.0.0.1:1", "--categories", "bogus"]) == 2
    assert "unknown category 'bogus'" in capsys.readouterr().err


def test_batch_mode_grades_a_folder_into_one_csv(tmp_path, capsys):
    submissions = tmp_path / "submissions"
    for student, zoo_name in (("ada", "correct"), ("bob", "echo")):
        folder = submissions / student
        folder.mkdir(parents=True)
        (folder / "server.py").write_text(
            f"import sys\nfrom chatlab.zoo.__main__ import main\nsys.exit(main([{zoo_name!r}, *sys.argv[1:]]))\n",
            encoding="utf-8",
        )
    rubric = tmp_path / "rubric.toml"
    rubric.write_text("[broadcast]\nto_others = 3\nin_order = 2\n", encoding="utf-8")
    out = tmp_path / "grades"
    status = main(["grade", "--batch", str(submissions), "--cmd", "{python} server.py --port {port}",
                   "--rubric", str(rubric), "--out", str(out), "--quiet"])
    assert status == 0
    with open(out / "grades.csv", newline="", encoding="utf-8") as file:
        rows = {row["submission"]: row for row in csv.DictReader(file)}
    assert set(rows) == {"ada", "bob"}
    assert (rows["ada"]["score"], rows["ada"]["max_score"], rows["ada"]["failed_checks"]) == ("5", "5", "")
    assert float(rows["bob"]["score"]) < 5 and "broadcast.to_others" in rows["bob"]["failed_checks"]
    assert rows["bob"]["broadcast"] == rows["bob"]["score"]
    for student in ("ada", "bob"):
        assert_gradescope(json.loads((out / student / "results.json").read_text(encoding="utf-8")), 2)
        assert (out / student / "report.html").is_file()
    assert "grades.csv" in capsys.readouterr().out


def test_the_command_line_grades_a_running_server(tmp_path, capsys):
    rubric = tmp_path / "rubric.toml"
    rubric.write_text("[commands]\nhelp = 1\nusers = 2\n", encoding="utf-8")
    with ChatServer(host="127.0.0.1", port=0) as server:
        host, port = server.address
        status = main(["grade", "--target", f"{host}:{port}", "--rubric", str(rubric), "--quiet",
                       "--json", str(tmp_path / "results.json"), "--html", str(tmp_path / "report.html")])
    printed = capsys.readouterr().out
    assert status == 0, printed
    assert "Total: 3/3" in printed
    assert json.loads((tmp_path / "results.json").read_text(encoding="utf-8"))["score"] == 3


def test_the_python_used_for_commands_is_this_one():
    from chatlab.grade.grader import expand_command

    assert expand_command("{python} server.py --port {port}", 4321)[:1] == [sys.executable]
    with pytest.raises(GradeError):
        expand_command("python server.py", 4321)


def test_the_bots_folder_is_found():
    assert (Path(checks.BOTS) / "broadcast.py").is_file()
