"""The parser of hey's report (molecule/shared/hey_report.py), on real hey output."""

import importlib.util
import pathlib

from webstack_testlib import ROOT

SPEC = importlib.util.spec_from_file_location("hey_report", ROOT / "molecule/shared/hey_report.py")
hey_report = importlib.util.module_from_spec(SPEC)
SPEC.loader.exec_module(hey_report)
DATA = pathlib.Path(__file__).parent / "data"


def test_a_clean_run():
    figures = hey_report.report((DATA / "hey-ok.txt").read_text())
    assert (figures["requests"], figures["ok"], figures["failed"]) == (200, 200, 0)
    assert (figures["p50_ms"], figures["p99_ms"], figures["worst_ms"]) == (2.8, 10.6, 13.4)


def test_connection_errors_count_as_failures():
    figures = hey_report.report((DATA / "hey-refused.txt").read_text())
    assert (figures["requests"], figures["ok"], figures["failed"], figures["errors"]) == (20, 0, 20, 20)


def test_other_statuses_count_as_failures():
    text = "Status code distribution:\n  [200]\t90 responses\n  [502]\t7 responses\n  [429]\t3 responses\n"
    figures = hey_report.report(text)
    assert (figures["requests"], figures["ok"], figures["failed"]) == (100, 90, 10)
