# The pytest plugin ci adds to every test step (`-p ci_results`), mounted read-only from the
# controller; the project's own plugins, options and reports (--junitxml) are left alone.
#
# It writes one JSON object per line to the file named by the environment variable
# CI_RESULTS_FILE, as each test finishes:
#   {"type": "test", "nodeid", "file", "line", "outcome", "duration", "message", "longrepr"}
# with outcome one of passed, failed, error, skipped, xfailed, xpassed (an error in setup or
# teardown is "error"; an xfail test that passes is "xpassed", or "failed" when strict), and at
# the end {"type": "session", "exitstatus", "duration"}. `longrepr` is the failure's text as
# pytest prints it, cut at LONGREPR_MAX characters (the record says how long it was).
#
# On a retry of failed tests, CI_RERUN holds their node ids, one per line: of the tests the
# command collects, only those run (the others are deselected, as `-k` would).
import json
import os
import time

import pytest

LONGREPR_MAX = 64 * 1024
MESSAGE_MAX = 1000


class _Recorder:
    """Records the tests of one pytest session (the outermost one of the process)."""

    def __init__(self, path):
        os.makedirs(os.path.dirname(path), exist_ok=True)
        self.out = open(path, "w", encoding="utf-8", errors="replace")
        self.tests = {}
        self.started = time.monotonic()

    def write(self, record):
        self.out.write(json.dumps(record, ensure_ascii=False) + "\n")
        self.out.flush()

    def pytest_runtest_logreport(self, report):
        entry = self.tests.setdefault(
            report.nodeid,
            {"outcome": None, "duration": 0.0, "message": "", "longrepr": ""},
        )
        entry["duration"] += getattr(report, "duration", 0.0) or 0.0
        entry["file"], entry["line"] = report.location[0], report.location[1]
        xfail = hasattr(report, "wasxfail")
        outcome = None
        if report.when == "call":
            if report.passed:
                outcome = "xpassed" if xfail else "passed"
            elif report.skipped:
                outcome = "xfailed" if xfail else "skipped"
            else:
                outcome = "failed"
        elif report.failed:
            outcome = "error"
        elif report.skipped:
            outcome = "xfailed" if xfail else "skipped"
        if outcome is not None and (
            entry["outcome"] in (None, "passed", "xpassed") or outcome == "error"
        ):
            entry["outcome"] = outcome
            if outcome in ("failed", "error", "skipped", "xfailed"):
                entry["message"] = _message(report)[:MESSAGE_MAX]
                entry["longrepr"] = _text(report.longrepr)

    def pytest_runtest_logfinish(self, nodeid, location):
        entry = self.tests.pop(nodeid, None)
        if entry is None or entry["outcome"] is None:
            return
        longrepr = entry["longrepr"]
        self.write(
            {
                "type": "test",
                "nodeid": nodeid,
                "file": entry.get("file", location[0]),
                "line": None if entry.get("line") is None else entry["line"] + 1,
                "outcome": entry["outcome"],
                "duration": round(entry["duration"], 6),
                "message": entry["message"],
                "longrepr": longrepr[:LONGREPR_MAX],
                "longrepr_chars": len(longrepr),
            }
        )

    def pytest_sessionfinish(self, session, exitstatus):
        self.write(
            {
                "type": "session",
                "exitstatus": int(exitstatus),
                "duration": round(time.monotonic() - self.started, 6),
            }
        )
        self.out.close()


class _Rerun:
    """Keeps only the tests a retry runs again."""

    def __init__(self, nodeids):
        self.nodeids = nodeids

    @pytest.hookimpl(trylast=True)
    def pytest_collection_modifyitems(self, session, config, items):
        keep = [item for item in items if item.nodeid in self.nodeids]
        if len(keep) != len(items):
            config.hook.pytest_deselected(
                items=[item for item in items if item.nodeid not in self.nodeids]
            )
            items[:] = keep


def pytest_configure(config):
    # Only the process's first session records (not pytest sessions that tests run themselves,
    # in process or as subprocesses: the variables are gone for them), and not xdist's workers.
    path = os.environ.pop("CI_RESULTS_FILE", None)
    rerun = os.environ.pop("CI_RERUN", None)
    if hasattr(config, "workerinput"):
        return
    if path:
        config.pluginmanager.register(_Recorder(path), "ci_results_recorder")
    if rerun:
        nodeids = {line for line in rerun.split("\n") if line}
        config.pluginmanager.register(_Rerun(nodeids), "ci_results_rerun")


def _text(longrepr):
    if longrepr is None:
        return ""
    if isinstance(longrepr, tuple) and len(longrepr) == 3:
        return str(longrepr[2])
    return str(longrepr)


def _message(report):
    crash = getattr(getattr(report, "longrepr", None), "reprcrash", None)
    if crash is not None and getattr(crash, "message", None):
        return str(crash.message)
    if isinstance(report.longrepr, tuple) and len(report.longrepr) == 3:
        return str(report.longrepr[2])
    text = _text(report.longrepr).strip().splitlines()
    return text[-1] if text else ""
