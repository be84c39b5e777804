"""A reboot during the backup window (issue 15), under a real systemd: the interrupted run is a
warning (one healthchecks /log notice, no failure ping, no webhook, the unit not failed, no
OnFailure=), and the next boot runs the backup again by itself (ghost-backup-resume.service).
Two boots of one container (tests/system/reboot.py); skipped only when none can boot here."""

from __future__ import annotations

import json

import pytest

from ghost_backup.report.alerts import build_ping_rid
from tests.helpers import find_canaries
from tests.system.nspawn import cannot_boot_reason, venv_install
from tests.system.reboot import RebootEvidence, run_reboot_scenario
from tests.system.test_units_under_systemd import RUN_ID, _say

pytestmark = pytest.mark.system


@pytest.fixture(scope="module")
def rebooted(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
             ) -> RebootEvidence:
    reason = cannot_boot_reason()
    if reason is not None:
        _say(request, f"SKIP reboot system test: {reason}")
        pytest.skip(reason)
    evidence = run_reboot_scenario(tmp_path_factory.mktemp("reboot"), venv_install())
    _say(request, f"reboot system test (two boots): {evidence.seconds:.1f} s")
    assert evidence.text("boot1.done"), "boot 1 did not reach the reboot:\n" + \
        evidence.console[-3000:]
    assert evidence.text("probe.done"), "boot 2 did not finish:\n" + evidence.console[-3000:]
    return evidence


def _run_ids(entries: list[dict[str, object]]) -> set[str]:
    return {m.group(1) for e in entries if (m := RUN_ID.search(str(e.get("MESSAGE", ""))))}


def test_the_run_was_transferring_when_the_reboot_came(rebooted: RebootEvidence) -> None:
    assert rebooted.text("boot1.active").strip() == "active"
    assert len(_run_ids(rebooted.journal("interrupted.journal.json"))) == 1


def test_interrupted_run_is_a_warning_not_a_failure(rebooted: RebootEvidence) -> None:
    entries = rebooted.journal("interrupted.journal.json")
    messages = [str(e.get("MESSAGE", "")) for e in entries]
    assert any("interrupted by system shutdown; the next boot resumes it" in m
               for m in messages), messages
    assert [m for e, m in zip(entries, messages, strict=True)
            if e.get("PRIORITY") in ("0", "1", "2", "3")] == []
    # systemd's own view: the unit stopped cleanly (death by SIGTERM), it did not fail.
    about = [str(e.get("MESSAGE", "")) for e in rebooted.journal("pid1-about-unit.json")]
    assert not any("Failed with result" in m for m in about), about
    assert rebooted.journal("alert-unit.journal.json") == []  # OnFailure= never fired


def test_healthchecks_got_one_log_notice_and_no_failure_for_the_interrupted_run(
    rebooted: RebootEvidence,
) -> None:
    [run_id] = _run_ids(rebooted.journal("interrupted.journal.json"))
    rid = build_ping_rid(run_id)
    mine = [r for r in rebooted.alerts if r.rid == rid]
    assert [(r.kind, r.status) for r in mine] == [("start", 200), ("log", 200)], mine
    assert "interrupted by system shutdown; resumes at next boot" in mine[1].body
    hooks = [json.loads(r.body) for r in rebooted.alerts if r.path == "/hook"]
    assert hooks == []


def test_the_next_boot_runs_the_interrupted_backup_by_itself(rebooted: RebootEvidence
                                                             ) -> None:
    show = rebooted.show("resumed.show")
    assert (show["Result"], show["ExecMainStatus"]) == ("success", "0"), \
        rebooted.text("resumed.journal.json")[-2000:]
    assert "Result=success" in rebooted.text("resume-unit.show")
    [first] = _run_ids(rebooted.journal("interrupted.journal.json"))
    [second] = _run_ids(rebooted.journal("resumed.journal.json"))
    assert first != second
    assert [r["request_id"] for r in rebooted.proxy_requests] == [first, second]
    record = json.loads(rebooted.text("last-run.json"))
    assert (record["run_id"], record["outcome"]) == (second, "success")
    assert "run-in-progress" not in rebooted.text("state-files.txt").split()
    assert [(r.kind, r.exit_status) for r in rebooted.alerts
            if r.rid == build_ping_rid(second)] == [("start", None), ("exit", 0)]
    assert sorted(p.name for p in rebooted.s3.bucket_dir("ghost-system").rglob("*.dat")) == \
        sorted(p.name for p in rebooted.source.rglob("*.dat"))


def test_no_key_in_either_boot(rebooted: RebootEvidence) -> None:
    assert find_canaries(rebooted.secrets, texts=[rebooted.console, *(
        r.body for r in rebooted.alerts)], dirs=[rebooted.out]) == []
