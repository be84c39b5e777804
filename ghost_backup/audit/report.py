"""The audit's findings and their text and JSON reports (pure)."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class Finding:
    """A suspicious value: where it is and what kind, with a fingerprint instead of the value."""

    path: str
    line: int
    kind: str
    name: str
    shape: str
    fingerprint: str
    via: str = ""


@dataclass(frozen=True)
class Skipped:
    """A file or directory not (fully) read, and why."""

    path: str
    reason: str


@dataclass(frozen=True)
class AuditReport:
    """The outcome of one audit."""

    root: str
    findings: tuple[Finding, ...]
    unreadable: tuple[Skipped, ...]
    skipped: tuple[Skipped, ...]
    files_scanned: int
    seconds: float
    notes: tuple[str, ...] = ()
    incomplete: tuple[str, ...] = ()

    @property
    def clean(self) -> bool:
        """Return True when nothing that looks like a key was found."""
        return not self.findings

    @property
    def gaps(self) -> tuple[str, ...]:
        """Return why the audit could not read everything it meant to (empty: it did)."""
        truncated = sum(1 for s in self.skipped if s.reason.startswith("truncated"))
        return (
            *self.incomplete,
            *((f"{len(self.unreadable)} path(s) unreadable",) if self.unreadable else ()),
            *((f"{truncated} file(s) read only in part",) if truncated else ()),
        )


def format_finding(finding: Finding) -> str:
    """Return one finding as a line: ``FILE:LINE: KIND NAME [shape] sha256:FP``."""
    shape = f" ({finding.shape} shape)" if finding.shape and finding.shape != finding.name else ""
    via = f" [via {finding.via}]" if finding.via else ""
    return (f"{finding.path}:{finding.line}: {finding.kind} {finding.name}{shape} "
            f"sha256:{finding.fingerprint}{via}")


def format_report_text(report: AuditReport) -> str:
    """Return the report as lines for a terminal or the journal."""
    lines = [format_finding(f) for f in report.findings]
    lines += [f"unreadable: {u.path}: {u.reason}" for u in report.unreadable]
    lines += [f"note: {note}" for note in report.notes]
    lines += [f"truncated: {s.path}: {s.reason}" for s in report.skipped
              if s.reason.startswith("truncated")]
    lines += [f"incomplete: {reason}" for reason in report.incomplete]
    tail = (f"{report.files_scanned} files read in {report.seconds:.2f} s "
            f"({len(report.unreadable)} unreadable), root {report.root}")
    if report.clean and report.gaps:
        lines.append(f"audit-host: incomplete: no S3/R2 key found in what was read, but "
                     f"{'; '.join(report.gaps)}; {tail}")
    elif report.clean:
        lines.append(f"audit-host: clean: no S3/R2 key found; {tail}")
    else:
        files = len({f.path for f in report.findings})
        lines.append(f"audit-host: {len(report.findings)} finding(s) in {files} file(s): "
                     f"long-lived keys may be on this host; {tail}")
    return "\n".join(lines) + "\n"


def format_report_json(report: AuditReport) -> str:
    """Return the report as one JSON document (for compliance jobs)."""
    data = {
        "clean": report.clean,
        "complete": not report.gaps,
        "gaps": list(report.gaps),
        "root": report.root,
        "files_scanned": report.files_scanned,
        "seconds": round(report.seconds, 3),
        "findings": [asdict(f) for f in report.findings],
        "unreadable": [asdict(u) for u in report.unreadable],
        "skipped": [asdict(s) for s in report.skipped],
        "notes": list(report.notes),
    }
    return json.dumps(data, indent=2) + "\n"


