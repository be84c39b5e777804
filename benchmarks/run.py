"""`make bench`: what ghost-backup costs next to rclone alone, on a loopback S3 endpoint.

Three ways to run the same ``rclone sync`` (argv from ``ghost_backup.rclone.build_sync_argv``,
so every contestant passes rclone exactly the flags ghost-backup passes):

  bare   rclone with the keys already in its environment: the floor;
  shell  benchmarks/baseline.sh, the shell-script flow: curl + jq + export + rclone;
  ghost  ``ghost-backup run``: proxy fetch, tmpfs config, supervised child, parsed JSON log.

They run in one process, against one ``rclone serve s3`` and one dev credential proxy, in
alternating order (bare, shell, ghost, then ghost, shell, bare, ...), so slow drift of a
shared machine hits every contestant alike; each repetition yields a pair ratio ghost/bare
and the table reports the median pair ratio with its spread. Figures, not tests: nothing
here asserts a target, the table only marks it. ``--quick`` shrinks every size to a smoke run
(tests/bench/test_bench_smoke.py); the method and the reference numbers are in
docs/performance.md.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import random
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from itertools import count
from pathlib import Path
from typing import Any

from ghost_backup import rclone as rclone_cmd
from ghost_backup.commands.run import log_rclone_event
from ghost_backup.host.notify import NullNotifier, StatusThrottle
from ghost_backup.host.process import StopRequest, run_child
from ghost_backup.logs import Redactor, TailHandler, setup_logging
from ghost_backup.rclone.progress import LogEvent, format_progress, parse_line
from ghost_backup.settings import RcloneSettings, parse_settings
from tests.support.devproxy import DevProxy, ProxyState
from tests.support.devstack import S3Server, canary_keys, start_s3_server

BIN = Path(sys.executable).parent
RCLONE = str(BIN / "rclone")
GHOST_BACKUP = str(BIN / "ghost-backup")
BASELINE = Path(__file__).resolve().parent / "baseline.sh"
BUCKET = "bench"
MIB = 1 << 20
MB = 1_000_000
CREDENTIAL_TTL_SECONDS = 3600
# ghost-backup derives --max-duration from the credentials' expiry minus the safety margin;
# the bare and shell runs get the same bound so their argv match.
MAX_DURATION_SECONDS = CREDENTIAL_TTL_SECONDS - 60
RSS_POLL_SECONDS = 0.01

# Targets from issue 8 (ratios are ghost-backup / bare rclone, same run).
RATIO_TARGET = {"a": 1.03, "b": 1.03, "c": 1.05, "d": 1.03}
STARTUP_TARGET_MS = 250
# Issue 16: interpreter start to the first credential request.
TO_REQUEST_TARGET_MS = 150
RSS_TARGET_MB = 45
RSS_FLAT_MB = 5
PIPELINE_TARGET_LINES_PER_S = 100_000

# Lines ghost-backup logs around its credential fetch and the spawn (orchestrator.py).
MARK_REQUEST = "credential request:"
MARK_RECEIVED = "credentials received:"
MARK_SPAWNED = "rclone started (pid"
# What `ghost-backup run` imports before its credential request (the CLI imports each command
# when it runs, so `import ghost_backup.cli` alone is no longer the figure).
RUN_IMPORTS = ("import ghost_backup.cli, ghost_backup.commands.run, "
               "ghost_backup.credentials.sources.http_json")


@dataclass(frozen=True)
class Sizes:
    """How big each scenario is; ``QUICK`` keeps the smoke run to seconds."""

    small_files: int
    many_files: int
    large_files: int
    large_file_bytes: int
    reps: int
    reps_many: int
    startup_runs: int
    pipeline_lines: int
    tuning_reps: int
    night_sizes: tuple[int, ...] = (1000, 20_000)
    provider_reps: int = 2


FULL = Sizes(small_files=5000, many_files=50_000, large_files=4, large_file_bytes=256 * MIB,
             reps=5, reps_many=3, startup_runs=10, pipeline_lines=200_000, tuning_reps=3)
QUICK = Sizes(small_files=40, many_files=120, large_files=2, large_file_bytes=MIB,
              reps=1, reps_many=1, startup_runs=1, pipeline_lines=3000, tuning_reps=1,
              night_sizes=(30,), provider_reps=1)

# rclone tuning candidates for R2-like endpoints (issue 8): rclone's own defaults, what we ship
# (RcloneSettings' defaults), and more parallelism.
TUNINGS: dict[str, dict[str, Any]] = {
    "rclone defaults": {"fast_list": False, "transfers": 4, "checkers": 8},
    "shipped": {},
    "fast-list, 16/32": {"fast_list": True, "transfers": 16, "checkers": 32},
    "16/32": {"fast_list": False, "transfers": 16, "checkers": 32},
}


class BenchFailed(RuntimeError):
    """A contestant did not finish cleanly: the figures would be meaningless."""


@dataclass(frozen=True)
class Sample:
    """One timed run: wall seconds, CPU seconds (user + system, the process and every child it
    waited for, rclone included) and, for ghost-backup, its own peak RSS (VmHWM) in kB."""

    wall: float
    cpu: float
    peak_rss_kb: int | None = None


@dataclass
class Bench:
    """The loopback stack every contestant talks to, and the trees they sync."""

    root: Path
    s3: S3Server
    proxy: DevProxy
    _ids: Iterator[int] = field(default_factory=count)

    @property
    def bucket_dir(self) -> Path:
        """Return the folder that holds the bucket's objects."""
        return self.s3.bucket_dir(BUCKET)

    def fresh_prefix(self, name: str) -> str:
        """Return a destination prefix no run has used: a first sync every time."""
        return f"{name}-{next(self._ids):04d}"

    def drop_prefix(self, prefix: str) -> None:
        """Delete a used prefix's objects (outside any timing) to keep /dev/shm small."""
        shutil.rmtree(self.bucket_dir / prefix, ignore_errors=True)

    def raw_config(self, source: Path, prefix: str, tuning: dict[str, Any]) -> dict[str, Any]:
        """Return ghost-backup's configuration for one run, as TOML data."""
        return {
            # One state dir serves every tree and prefix of the benchmark, so the shrink guard
            # (which compares with the last run, whatever tree that was) is off here.
            "source": {"path": str(source), "require_mountpoint": False,
                       "min_fraction_of_last": 0},
            "destination": {"bucket": BUCKET, "endpoint": self.s3.endpoint, "path": prefix},
            "credentials": {"url": self.proxy.url()},
            "rclone": {"binary": RCLONE, **tuning},
            "runtime": {"dir": str(self.root / "runtime"),
                        "manual_dir": str(self.root / "runtime"),
                        "lock_path": str(self.root / "ghost-backup.lock")},
            "state": {"dir": str(self.root / "state")},
        }

    def sync_argv(self, raw: dict[str, Any]) -> tuple[str, ...]:
        """Return the rclone argv ghost-backup would build, for the bare and shell runs."""
        settings = parse_settings(raw, {})  # validated as ghost-backup itself loads them
        work = self.root / "work"
        work.mkdir(exist_ok=True)
        config = self.root / rclone_cmd.CONFIG_NAME
        config.write_text(rclone_cmd.render_config(settings), encoding="utf-8")
        return rclone_cmd.build_sync_argv(settings, config_path=config, work_dir=work,
                                          max_duration_seconds=MAX_DURATION_SECONDS)

    def base_env(self) -> dict[str, str]:
        """Return the minimal environment every contestant starts from."""
        return {"PATH": f"{BIN}:/usr/bin:/bin", "HOME": str(self.root), "LANG": "C.UTF-8"}


# --- the contestants ---------------------------------------------------------------------

def run_bare(bench: Bench, raw: dict[str, Any], log: Path) -> Sample:
    """Run rclone alone, the keys already in its environment."""
    env = bench.base_env() | {
        "RCLONE_CONFIG_R2_ACCESS_KEY_ID": bench.s3.access_key_id,
        "RCLONE_CONFIG_R2_SECRET_ACCESS_KEY": bench.s3.secret_access_key,
    }
    return run_timed(bench.sync_argv(raw), env, log)


def run_shell(bench: Bench, raw: dict[str, Any], log: Path) -> Sample:
    """Run the shell-script flow: curl + jq + export + rclone."""
    env = bench.base_env() | {"PROXY_URL": bench.proxy.url()}
    return run_timed(["bash", str(BASELINE), *bench.sync_argv(raw)], env, log)


def write_ghost_config(bench: Bench, raw: dict[str, Any]) -> Path:
    """Write ghost-backup's config file for ``raw`` and return its path."""
    path = bench.root / "config.toml"
    path.write_text(render_toml(raw), encoding="utf-8")
    return path


def run_ghost(bench: Bench, raw: dict[str, Any], log: Path) -> Sample:
    """Run ``ghost-backup run``, sampling its own peak RSS (rclone excluded)."""
    argv = [GHOST_BACKUP, "--config", str(write_ghost_config(bench, raw)), "run"]
    return run_timed(argv, bench.base_env(), log, sample_rss=True)


CONTESTANTS: dict[str, Callable[[Bench, dict[str, Any], Path], Sample]] = {
    "bare": run_bare, "shell": run_shell, "ghost": run_ghost,
}


def read_peak_rss_kb(pid: int) -> int:
    """Return VmHWM (peak resident set, kB) of ``pid``, or 0 once it is gone."""
    try:
        status = Path(f"/proc/{pid}/status").read_text(encoding="ascii")
    except OSError:
        return 0
    for line in status.splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return 0


def run_timed(argv: Sequence[str], env: dict[str, str], log: Path, *,
              sample_rss: bool = False) -> Sample:
    """Run ``argv`` to completion, output appended to ``log``; return its wall time.

    Every contestant is waited for the same way (wait4 polled every 10 ms), so the poll costs
    them alike; wait4 also returns the CPU the whole process tree used, which a busy shared
    machine disturbs far less than wall time.
    """
    peak = 0
    with log.open("ab") as out:
        start = time.perf_counter()
        proc = subprocess.Popen(list(argv), env=env, stdin=subprocess.DEVNULL,
                                stdout=out, stderr=out)
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            if sample_rss:
                peak = max(peak, read_peak_rss_kb(proc.pid))
            time.sleep(RSS_POLL_SECONDS)
        wall = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        tail = log.read_text(errors="replace").splitlines()[-5:]
        raise BenchFailed(f"{Path(argv[0]).name} exited {proc.returncode}: " + " | ".join(tail))
    return Sample(wall, usage.ru_utime + usage.ru_stime, peak or None)


# --- scenarios -----------------------------------------------------------------------------

def make_small_tree(root: Path, files: int, *, seed: int) -> Path:
    """Create ``files`` files of 1 B..4 KiB, 250 to a folder, under ``root``; return root."""
    rnd = random.Random(seed)
    for i in range(files):
        folder = root / f"dir{i // 250:03d}"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"file-{i:06d}.dat").write_bytes(rnd.randbytes(rnd.randint(1, 4096)))
    return root


def make_large_tree(root: Path, files: int, size: int) -> Path:
    """Create ``files`` files of ``size`` random bytes under ``root``; return root."""
    root.mkdir(parents=True, exist_ok=True)
    for i in range(files):
        with (root / f"large-{i}.bin").open("wb") as out:
            left = size
            while left:
                block = min(left, 16 * MIB)
                out.write(os.urandom(block))
                left -= block
    return root


@dataclass
class ScenarioResult:
    """Every sample of one scenario, per contestant, in run order."""

    name: str
    title: str
    files: int
    samples: dict[str, list[Sample]]

    def median_wall(self, who: str) -> float:
        """Return the contestant's median wall time."""
        return statistics.median(s.wall for s in self.samples[who])

    def median_cpu(self, who: str) -> float:
        """Return the contestant's median CPU seconds (its process tree)."""
        return statistics.median(s.cpu for s in self.samples[who])

    def pair_extra_cpu(self, who: str) -> list[float]:
        """Return ``who``'s CPU seconds minus bare rclone's, per repetition."""
        return [w.cpu - b.cpu for w, b in zip(self.samples[who], self.samples["bare"],
                                              strict=True)]

    def pair_ratios(self, who: str) -> list[float]:
        """Return ``who``/bare for each repetition (the two ran back to back)."""
        return [w.wall / b.wall for w, b in zip(self.samples[who], self.samples["bare"],
                                               strict=True)]

    def peak_rss_mb(self) -> float | None:
        """Return ghost-backup's largest peak RSS over the repetitions, in MB."""
        peaks = [s.peak_rss_kb for s in self.samples["ghost"] if s.peak_rss_kb]
        return max(peaks) * 1024 / MB if peaks else None


def run_order(rep: int) -> list[str]:
    """Return the contestants' order for repetition ``rep``: forward, then reversed."""
    names = list(CONTESTANTS)
    return names if rep % 2 == 0 else names[::-1]


def compare(bench: Bench, name: str, title: str, source: Path, files: int, *, reps: int,
            first_sync: bool) -> ScenarioResult:
    """Run every contestant ``reps`` times on ``source``, alternating the order.

    ``first_sync``: each run gets an empty destination prefix. Otherwise all runs sync into
    one prefix that already holds the tree (nothing to transfer, every file checked).
    """
    samples: dict[str, list[Sample]] = {who: [] for who in CONTESTANTS}
    synced = f"{name}-synced"
    if not first_sync:
        run_bare(bench, bench.raw_config(source, synced, {}), bench.root / f"{name}-setup.log")
    for rep in range(reps):
        for who in run_order(rep):
            prefix = bench.fresh_prefix(name) if first_sync else synced
            raw = bench.raw_config(source, prefix, {})
            sample = CONTESTANTS[who](bench, raw, bench.root / f"{name}-{who}.log")
            samples[who].append(sample)
            if first_sync:
                bench.drop_prefix(prefix)
        progress(f"  {name} rep {rep + 1}/{reps}: " + ", ".join(
            f"{who} {samples[who][-1].wall:.2f}s" for who in CONTESTANTS))
    return ScenarioResult(name, title, files, samples)


# --- start-up cost -------------------------------------------------------------------------

REPO = Path(__file__).resolve().parents[1]
# The console script's own body (pip's entry-point wrapper), with PYTHONPATH choosing the
# tree: the code under test and a checkout of older code start exactly alike.
LAUNCHER = "import sys; from ghost_backup.cli import entry_point; sys.exit(entry_point())"
# rclone behind a timing wrapper: each call appends "<command> <start> <end>" (bash's
# $EPOCHREALTIME), so the source listing's wall time can be taken off the supervisor's.
# bash's own start (about 2 ms here) is on the supervisor's side of the line.
TIMED_RCLONE = """#!/bin/bash
start=$EPOCHREALTIME
{rclone} "$@"
rc=$?
echo "$1 $start $EPOCHREALTIME" >> {log}
exit $rc
"""


@dataclass
class StartupRuns:
    """One tree's runs, in ms: start to rclone spawned, the fetch, start to the request's
    arrival at the proxy, and the source listing's wall time (before the request)."""

    total_ms: list[float] = field(default_factory=list)
    fetch_ms: list[float] = field(default_factory=list)
    to_request_ms: list[float] = field(default_factory=list)
    listing_ms: list[float] = field(default_factory=list)

    def own_ms(self) -> list[float]:
        """Return the supervisor's own time to the request: the listing child taken off."""
        return [t - ls for t, ls in zip(self.to_request_ms, self.listing_ms, strict=True)]


@dataclass
class StartupResult:
    """ghost-backup's fixed cost: this tree's runs and, if asked, an older tree's, run in
    alternation."""

    runs: StartupRuns
    baseline: StartupRuns | None
    baseline_label: str | None
    python_bare_ms: float
    import_ms: float
    heaviest_imports_ms: list[tuple[str, float]]

    def without_fetch_ms(self) -> list[float]:
        """Return start-up minus the credential fetch (the proxy's latency)."""
        return [t - f for t, f in zip(self.runs.total_ms, self.runs.fetch_ms, strict=True)]


def run_startup_once(bench: Bench, argv: list[str], env: dict[str, str], timings: Path,
                     into: StartupRuns | None) -> None:
    """Run ``ghost-backup run`` once; time its lines as they arrive and its first credential
    request where the proxy received it (time.monotonic on both sides: one clock)."""
    timings.write_text("", encoding="ascii")
    seen = len(bench.proxy.state.requests)
    marks: dict[str, float] = {}
    start = time.monotonic()
    proc = subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    assert proc.stderr is not None
    for raw in proc.stderr:
        now = time.monotonic()
        line = raw.decode("utf-8", "replace")
        for mark in (MARK_REQUEST, MARK_RECEIVED, MARK_SPAWNED):
            if mark in line:
                marks.setdefault(mark, now)
    requests = bench.proxy.state.requests[seen:]
    if proc.wait() != 0 or len(marks) != 3 or not requests:
        raise BenchFailed(f"start-up run failed (exit {proc.returncode}, marks {marks})")
    arrived = float(requests[0]["monotonic"])
    calls = [line.split() for line in timings.read_text(encoding="ascii").splitlines()]
    # The run's first listing is the source's, before the request (the backup's comes after).
    listing = next(float(end) - float(begin) for name, begin, end in calls if name == "lsf")
    if into is None:
        return
    into.total_ms.append((marks[MARK_SPAWNED] - start) * 1000)
    into.fetch_ms.append((marks[MARK_RECEIVED] - marks[MARK_REQUEST]) * 1000)
    into.to_request_ms.append((arrived - start) * 1000)
    into.listing_ms.append(listing * 1000)


def measure_startup(bench: Bench, source: Path, runs: int,
                    baseline: Path | None = None) -> StartupResult:
    """Time ``ghost-backup run`` from process start to its first credential request.

    With ``baseline`` (a checkout of older code), its runs alternate with this tree's (this,
    older; older, this; ...), so the machine's drift hits both alike.
    """
    timings = bench.root / "startup-rclone-calls.txt"
    wrapper = bench.root / "rclone-timed"
    wrapper.write_text(TIMED_RCLONE.format(rclone=RCLONE, log=timings), encoding="ascii")
    wrapper.chmod(0o755)
    raw = bench.raw_config(source, "startup", {})
    run_bare(bench, raw, bench.root / "startup-setup.log")
    raw["rclone"]["binary"] = str(wrapper)
    # -P: the current directory stays off sys.path (as for the console script), so
    # PYTHONPATH alone picks the tree.
    argv = [sys.executable, "-P", "-c", LAUNCHER, "--config",
            str(write_ghost_config(bench, raw)), "run"]
    trees = {"this": REPO} | ({"baseline": baseline.resolve()} if baseline else {})
    results = {who: StartupRuns() for who in trees}
    for rep in range(runs + 1):  # the first round only warms caches (and the .pyc files)
        order = list(trees) if rep % 2 == 0 else list(trees)[::-1]
        for who in order:
            env = bench.base_env() | {"PYTHONPATH": str(trees[who])}
            run_startup_once(bench, argv, env, timings, results[who] if rep else None)
    python_bare = statistics.median(time_python(["-c", "pass"]) for _ in range(5))
    with_imports = statistics.median(
        time_python(["-c", RUN_IMPORTS]) for _ in range(5))
    label = None
    if baseline is not None:
        label = subprocess.run(["git", "-C", str(baseline), "log", "-1", "--format=%h"],
                               capture_output=True, text=True, check=False).stdout.strip()
    return StartupResult(results["this"], results.get("baseline"), label or None, python_bare,
                         with_imports - python_bare, heaviest_imports())


def format_startup(startup: StartupResult) -> str:
    """Return the start-up figures, and the comparison with the older tree if there is one."""
    runs = startup.runs
    net = startup.without_fetch_ms()
    imports = ", ".join(f"{name} {ms:.0f}" for name, ms in startup.heaviest_imports_ms)
    to_request = statistics.median(runs.to_request_ms)
    lines = [
        f"start-up, process start to rclone spawned ({len(net)} runs, median):",
        f"  total {statistics.median(runs.total_ms):.0f} ms, credential fetch "
        f"{statistics.median(runs.fetch_ms):.0f} ms, without the fetch "
        f"{statistics.median(net):.0f} ms (min {min(net):.0f}, max {max(net):.0f}), "
        f"target <= {STARTUP_TARGET_MS} ms: {mark(statistics.median(net) <= STARTUP_TARGET_MS)}",
        f"  process start to the first credential request (its arrival at the proxy) "
        f"{to_request:.0f} ms (min {min(runs.to_request_ms):.0f}), target <= "
        f"{TO_REQUEST_TARGET_MS} ms: {mark(to_request <= TO_REQUEST_TARGET_MS)}",
        f"  of which rclone's listing of the source (a child the supervisor waits on) "
        f"{statistics.median(runs.listing_ms):.0f} ms; the supervisor's own time "
        f"{statistics.median(runs.own_ms()):.0f} ms (min {min(runs.own_ms()):.0f})",
        f"  python itself {startup.python_bare_ms:.0f} ms, imports of the run path "
        f"{startup.import_ms:.0f} ms",
        f"  heaviest imports (cumulative ms): {imports}",
    ]
    old = startup.baseline
    if old is not None:
        def row(what: str, new_ms: list[float], old_ms: list[float]) -> str:
            pairs = [n / o for n, o in zip(new_ms, old_ms, strict=True)]
            return (f"  {what}: median {statistics.median(old_ms):.0f} -> "
                    f"{statistics.median(new_ms):.0f} ms (min {min(old_ms):.0f} -> "
                    f"{min(new_ms):.0f}), ratio of medians "
                    f"{statistics.median(new_ms) / statistics.median(old_ms):.2f}, "
                    f"pair ratios median {statistics.median(pairs):.2f} "
                    f"({min(pairs):.2f}-{max(pairs):.2f})")

        lines += [
            f"start-up against {startup.baseline_label or 'the baseline'} (alternating runs, "
            f"{len(old.to_request_ms)} each, older -> this tree):",
            row("to the first credential request", runs.to_request_ms, old.to_request_ms),
            row("the supervisor's own time (listing excluded)", runs.own_ms(), old.own_ms()),
            row("rclone's listing of the source", runs.listing_ms, old.listing_ms),
        ]
    return "\n".join(lines)


def time_python(args: list[str]) -> float:
    """Return the wall time of ``python args`` in ms."""
    start = time.perf_counter()
    subprocess.run([sys.executable, *args], check=True)
    return (time.perf_counter() - start) * 1000


def heaviest_imports(top: int = 6) -> list[tuple[str, float]]:
    """Return the slowest top-level imports of ``run``'s path (-X importtime)."""
    out = subprocess.run([sys.executable, "-X", "importtime", "-c", RUN_IMPORTS],
                         capture_output=True, text=True, check=True).stderr
    # Lines read "import time: self [us] | cumulative | name", the name indented by depth;
    # depth 1 below ghost_backup's own modules is what our code pulls in.
    found: dict[str, float] = {}
    for line in out.splitlines():
        parts = line.removeprefix("import time:").split("|")
        if len(parts) != 3 or not parts[1].strip().isdigit():
            continue
        name = parts[2].rstrip()
        root = name.strip().split(".")[0]
        if len(name) - len(name.lstrip()) == 1 or root == "ghost_backup":
            found[name.strip()] = max(found.get(name.strip(), 0.0), int(parts[1]) / 1000)
    ranked = sorted(found.items(), key=lambda item: item[1], reverse=True)
    return [(name, ms) for name, ms in ranked if name != "ghost_backup.cli"][:top]


# --- the JSON-line pipeline ----------------------------------------------------------------

@dataclass
class PipelineResult:
    """Lines per second through parse + format + log, on one pinned core: per second of wall
    time, and per second of CPU time (what one core can do, whatever else shares it)."""

    lines: int
    in_process_lines_per_s: float
    through_pipe_lines_per_s: float
    in_process_lines_per_cpu_s: float
    through_pipe_lines_per_cpu_s: float


def record_rclone_log(bench: Bench, source: Path) -> list[bytes]:
    """Sync ``source`` with bare rclone at INFO and return its stderr lines (per-file JSON)."""
    prefix = bench.fresh_prefix("record")
    log = bench.root / "recorded.log"
    log.unlink(missing_ok=True)
    run_bare(bench, bench.raw_config(source, prefix, {"stats_interval_seconds": 1}), log)
    bench.drop_prefix(prefix)
    return [line for line in log.read_bytes().splitlines(keepends=True) if line.strip()]


def measure_pipeline(bench: Bench, recorded: list[bytes], total: int) -> PipelineResult:
    """Feed a recorded rclone log through the supervisor's path, pinned to one core.

    In process: ``parse_line`` + ``log_rclone_event`` with the real redacting handler (journal
    prefixes) to /dev/null plus the run's tail handler. Through a pipe: ``run_child`` reading
    ``cat`` of the same log in 64 KiB chunks, exactly as it reads rclone.
    """
    lines = [recorded[i % len(recorded)] for i in range(total)]
    path = bench.root / "pipeline.log"
    path.write_bytes(b"".join(lines))
    cpu = min(os.sched_getaffinity(0))
    saved_affinity = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {cpu})  # the cat child inherits the same single core
    redactor = Redactor()
    redactor.add(["BENCHSECRETVALUE0001", "bench-secret-value-0002"])
    root = logging.getLogger()
    saved_handlers, saved_level = root.handlers[:], root.level
    status = StatusThrottle(NullNotifier(), 5.0, time.monotonic)

    def on_event(event: LogEvent) -> None:  # the orchestrator's on_event, minus systemd
        log_rclone_event(event)
        if event.stats is not None:
            status.update(format_progress(event.stats))

    try:
        # Line-buffered, like our stderr: one write(2) per record, as under journald.
        with Path(os.devnull).open("w", encoding="utf-8", buffering=1) as devnull:
            setup_logging(redactor, journal=True, stream=devnull)
            root.addHandler(TailHandler(redactor))
            texts = [line.decode("utf-8") for line in lines]
            start, cpu_start = time.perf_counter(), cpu_seconds()
            for text in texts:
                on_event(parse_line(text))
            in_process = total / (time.perf_counter() - start)
            in_process_cpu = total / (cpu_seconds() - cpu_start)
            start, cpu_start = time.perf_counter(), cpu_seconds()
            result = run_child(["cat", str(path)], {"PATH": "/usr/bin:/bin"},
                               on_event=on_event, on_started=lambda _pid: None,
                               on_tick=lambda: None, stop=StopRequest(), tick_seconds=1.0,
                               stall_timeout_seconds=3600, term_timeout_seconds=5)
            through_pipe = total / (time.perf_counter() - start)
            through_pipe_cpu = total / (cpu_seconds() - cpu_start)
    finally:
        root.handlers[:] = saved_handlers
        root.setLevel(saved_level)
        os.sched_setaffinity(0, saved_affinity)
    if result.returncode != 0:
        raise BenchFailed(f"cat exited {result.returncode}")
    return PipelineResult(total, in_process, through_pipe, in_process_cpu, through_pipe_cpu)


def cpu_seconds() -> float:
    """Return CPU seconds used so far by this process and its waited-for children (cat)."""
    own, children = (resource.getrusage(who) for who in (resource.RUSAGE_SELF,
                                                          resource.RUSAGE_CHILDREN))
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


# --- rclone tuning -------------------------------------------------------------------------

@dataclass
class TuningResult:
    """files/s of bare rclone per flag set, on a first sync and on a no-change sync."""

    files: int
    first_sync: dict[str, list[float]]
    no_change: dict[str, list[float]]


def measure_tuning(bench: Bench, source: Path, files: int, reps: int) -> TuningResult:
    """Time bare rclone under each flag set in :data:`TUNINGS`, alternating the order."""
    first: dict[str, list[float]] = {name: [] for name in TUNINGS}
    again: dict[str, list[float]] = {name: [] for name in TUNINGS}
    run_bare(bench, bench.raw_config(source, "tuning-synced", {}), bench.root / "tuning.log")
    names = list(TUNINGS)
    for rep in range(reps):
        for name in names if rep % 2 == 0 else names[::-1]:
            prefix = bench.fresh_prefix("tuning")
            raw = bench.raw_config(source, prefix, TUNINGS[name])
            first[name].append(files / run_bare(bench, raw, bench.root / "tuning.log").wall)
            bench.drop_prefix(prefix)
            raw = bench.raw_config(source, "tuning-synced", TUNINGS[name])
            again[name].append(files / run_bare(bench, raw, bench.root / "tuning.log").wall)
        progress(f"  tuning rep {rep + 1}/{reps} done")
    return TuningResult(files, first, again)


# --- output --------------------------------------------------------------------------------

def render_toml(data: dict[str, Any]) -> str:
    """Return ``data`` (sections of scalars and lists) as TOML."""
    def value(item: Any) -> str:
        if isinstance(item, bool):
            return "true" if item else "false"
        if isinstance(item, int | float):
            return str(item)
        if isinstance(item, list | tuple):
            return "[" + ", ".join(value(v) for v in item) + "]"
        return json.dumps(str(item))

    out = []
    for section, values in data.items():
        out.append(f"[{section}]")
        out += [f"{key} = {value(val)}" for key, val in values.items()]
        out.append("")
    return "\n".join(out)


def progress(text: str) -> None:
    """Print a progress line to stderr (the table goes to stdout)."""
    print(text, file=sys.stderr, flush=True)


def table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Return a plain-text table with columns aligned."""
    widths = [max(len(str(row[i])) for row in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(str(cell).ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
             for row in [header, *rows]]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def spread(values: Sequence[float]) -> str:
    """Return ``median (min..max)`` of ratios."""
    med = statistics.median(values)
    return f"{med:.3f} ({min(values):.3f}..{max(values):.3f})"


def mark(ok: bool) -> str:
    """Return the verdict cell."""
    return "ok" if ok else "MISSED"


def report(results: dict[str, Any]) -> str:
    """Return every table for the figures gathered."""
    parts = []
    scenarios: list[ScenarioResult] = results.get("scenarios", [])
    if scenarios:
        rows = []
        for sc in scenarios:
            ratios = sc.pair_ratios("ghost")
            rss = sc.peak_rss_mb()
            rows.append([
                f"({sc.name}) {sc.title}", str(sc.files), str(len(sc.samples["bare"])),
                f"{sc.median_wall('bare'):.2f}", f"{sc.median_wall('shell'):.2f}",
                f"{sc.median_wall('ghost'):.2f}", spread(sc.pair_ratios("shell")),
                spread(ratios), f"<={RATIO_TARGET[sc.name]}",
                mark(statistics.median(ratios) <= RATIO_TARGET[sc.name]),
                f"{rss:.1f}" if rss is not None else "-",
            ])
        parts.append(table(
            ["scenario", "files", "reps", "bare s", "shell s", "ghost s",
             "shell/bare", "ghost/bare", "target", "", "ghost RSS MB"], rows))
        rows = [[f"({sc.name})", f"{sc.median_cpu('bare'):.2f}", f"{sc.median_cpu('shell'):.2f}",
                 f"{sc.median_cpu('ghost'):.2f}",
                 f"{statistics.median(sc.pair_extra_cpu('shell')):+.2f}",
                 f"{statistics.median(sc.pair_extra_cpu('ghost')):+.2f}",
                 f"{sc.median_cpu('ghost') / sc.median_cpu('bare'):.3f}"] for sc in scenarios]
        parts.append("CPU seconds, user + system, whole process tree (rclone included), "
                     "median; extra = contestant - bare, per pair:\n" + table(
                         ["scenario", "bare", "shell", "ghost", "shell extra", "ghost extra",
                          "ghost/bare"], rows))
        by_name = {sc.name: sc for sc in scenarios}
        peaks = [p for sc in scenarios if (p := sc.peak_rss_mb()) is not None]
        if peaks:
            lines = [f"supervisor peak RSS (VmHWM, rclone excluded): max {max(peaks):.1f} MB, "
                     f"target <= {RSS_TARGET_MB} MB: {mark(max(peaks) <= RSS_TARGET_MB)}"]
            small, many = by_name.get("a"), by_name.get("c")
            rss_a = small.peak_rss_mb() if small else None
            rss_c = many.peak_rss_mb() if many else None
            if rss_a is not None and rss_c is not None:
                lines.append(f"RSS growth (c) - (a): {rss_c - rss_a:+.1f} MB, target <= "
                             f"{RSS_FLAT_MB} MB: {mark(rss_c - rss_a <= RSS_FLAT_MB)}")
            parts.append("\n".join(lines))
    startup: StartupResult | None = results.get("startup")
    if startup is not None:
        parts.append(format_startup(startup))
    pipeline: PipelineResult | None = results.get("pipeline")
    if pipeline is not None:
        worst = min(pipeline.in_process_lines_per_cpu_s, pipeline.through_pipe_lines_per_cpu_s)
        parts.append(
            f"JSON-line pipeline, one pinned core, {pipeline.lines} recorded rclone INFO lines "
            "(per CPU second; per wall second in brackets):\n"
            f"  parse + log in process {pipeline.in_process_lines_per_cpu_s:,.0f} lines/s "
            f"({pipeline.in_process_lines_per_s:,.0f}); through run_child's pipe "
            f"{pipeline.through_pipe_lines_per_cpu_s:,.0f} lines/s "
            f"({pipeline.through_pipe_lines_per_s:,.0f}); "
            f"target >= {PIPELINE_TARGET_LINES_PER_S:,}: "
            f"{mark(worst >= PIPELINE_TARGET_LINES_PER_S)}; supervisor CPU per log line "
            f"{1e6 / pipeline.through_pipe_lines_per_cpu_s:.1f} us")
    tuning: TuningResult | None = results.get("tuning")
    if tuning is not None:
        rows = []
        for name, extra in TUNINGS.items():
            rc = RcloneSettings(**extra)
            flags = (f"{'--fast-list ' if rc.fast_list else ''}--transfers {rc.transfers} "
                     f"--checkers {rc.checkers}")
            rows.append([name, flags, f"{statistics.median(tuning.first_sync[name]):.0f}",
                         f"{statistics.median(tuning.no_change[name]):.0f}"])
        parts.append(f"rclone tuning, bare rclone, {tuning.files} small files, files/s "
                     "(median):\n" + table(["flags", "argv", "(a) first sync files/s",
                                            "(b) no change files/s"], rows))
    from benchmarks import nights  # noqa: PLC0415 (it imports this module)

    if (result := results.get("nights")) is not None:
        parts.append(nights.report_nights(result))
    if (providers := results.get("provider")) is not None:
        parts.append(nights.report_providers(providers))
    return "\n\n".join(parts)


def to_json(results: dict[str, Any]) -> dict[str, Any]:
    """Return the raw figures as JSON-able data."""
    return {key: [asdict(v) for v in value] if isinstance(value, list) else
            (asdict(value) if hasattr(value, "__dataclass_fields__") else value)
            for key, value in results.items()}


# --- main ----------------------------------------------------------------------------------

STEPS = ("a", "b", "c", "d", "startup", "pipeline", "tuning", "nights", "provider")


def machine() -> dict[str, str]:
    """Return what the figures were measured on."""
    cpu = next((line.split(":", 1)[1].strip()
                for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), "?")
    version = subprocess.run([RCLONE, "version"], capture_output=True, text=True,
                             check=True).stdout.splitlines()[0]
    return {"nproc": str(os.cpu_count()), "cpu": cpu, "rclone": version,
            "python": sys.version.split()[0], "load": " ".join(
                Path("/proc/loadavg").read_text().split()[:3])}


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """Return the command line options."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true",
                        default=os.environ.get("GHOST_BENCH_QUICK") == "1",
                        help="tiny sizes, one repetition: a smoke run (also GHOST_BENCH_QUICK=1)")
    parser.add_argument("--reps", type=int, default=None, help="repetitions per scenario")
    parser.add_argument("--reps-many", type=int, default=None,
                        help="repetitions of (c), the 50,000-file scenario")
    parser.add_argument("--only", default=",".join(STEPS),
                        help=f"comma-separated steps among {','.join(STEPS)}")
    parser.add_argument("--night-sizes", default=None, metavar="N,N",
                        help="tree sizes of the nights step (default 1000,20000; "
                             "100000 is extrapolated unless listed)")
    parser.add_argument("--startup-runs", type=int, default=None,
                        help="runs of the start-up step (default 10), per tree")
    parser.add_argument("--startup-baseline", type=Path, default=None, metavar="DIR",
                        help="a checkout of older code (git worktree add --detach DIR REV) "
                             "whose start-up runs alternate with this tree's")
    parser.add_argument("--json", type=Path, default=None, help="also write raw figures here")
    parser.add_argument("--keep", action="store_true", help="keep the scratch directory")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the selected steps and print the tables."""
    args = parse_args(argv)
    sizes = QUICK if args.quick else FULL
    if args.reps is not None:
        sizes = Sizes(**(asdict(sizes) | {"reps": args.reps,
                                          "reps_many": min(args.reps, sizes.reps_many)}))
    if args.reps_many is not None:
        sizes = Sizes(**(asdict(sizes) | {"reps_many": args.reps_many}))
    if args.startup_runs is not None:
        sizes = Sizes(**(asdict(sizes) | {"startup_runs": args.startup_runs}))
    if args.night_sizes is not None:
        sizes = Sizes(**(asdict(sizes) | {"night_sizes": tuple(
            int(n) for n in args.night_sizes.split(",") if n.strip())}))
    steps = [s.strip() for s in args.only.split(",") if s.strip()]
    unknown = set(steps) - set(STEPS)
    if unknown:
        progress(f"unknown steps: {', '.join(sorted(unknown))}")
        return 2
    # /dev/shm: the trees and the S3 store live in RAM, so disk noise stays out of the ratios.
    root = Path(tempfile.mkdtemp(prefix="ghost-bench-", dir="/dev/shm"))
    access, secret = canary_keys("bench")
    s3 = start_s3_server(RCLONE, root / "s3", access, secret, log_path=root / "s3.log")
    proxy = DevProxy(ProxyState(access, secret, ttl_seconds=CREDENTIAL_TTL_SECONDS)).start()
    bench = Bench(root, s3, proxy)
    bench.bucket_dir.mkdir(exist_ok=True)
    results: dict[str, Any] = {"machine": machine(), "sizes": asdict(sizes)}
    try:
        progress(f"scratch {root}; building trees")
        small = make_small_tree(root / "small", sizes.small_files, seed=1)
        for contestant in CONTESTANTS.values():  # warm-up: page cache, .pyc, the proxy
            contestant(bench, bench.raw_config(small, "warmup", {}), root / "warmup.log")
        scenarios = []
        if "a" in steps:
            scenarios.append(compare(bench, "a", "small files, first sync", small,
                                     sizes.small_files, reps=sizes.reps, first_sync=True))
        if "b" in steps:
            scenarios.append(compare(bench, "b", "same tree, no change", small,
                                     sizes.small_files, reps=sizes.reps, first_sync=False))
        if "c" in steps:
            many = make_small_tree(root / "many", sizes.many_files, seed=2)
            scenarios.append(compare(bench, "c", "many files at INFO, first sync", many,
                                     sizes.many_files, reps=sizes.reps_many, first_sync=True))
            shutil.rmtree(many)
        if "d" in steps:
            large = make_large_tree(root / "large", sizes.large_files, sizes.large_file_bytes)
            scenarios.append(compare(
                bench, "d", f"{sizes.large_files} large files, "
                f"{sizes.large_files * sizes.large_file_bytes // MIB} MiB", large,
                sizes.large_files, reps=sizes.reps, first_sync=True))
            shutil.rmtree(large)
        if scenarios:
            results["scenarios"] = scenarios
        if "startup" in steps:
            progress("  start-up")
            results["startup"] = measure_startup(bench, small, sizes.startup_runs,
                                                 args.startup_baseline)
        if "pipeline" in steps:
            progress("  pipeline")
            recorded = record_rclone_log(bench, small)
            results["pipeline"] = measure_pipeline(bench, recorded, sizes.pipeline_lines)
        if "tuning" in steps:
            results["tuning"] = measure_tuning(bench, small, sizes.small_files,
                                               sizes.tuning_reps)
        from benchmarks import nights  # noqa: PLC0415 (it imports this module)

        if "nights" in steps:
            results["nights"] = nights.measure_nights(bench, list(sizes.night_sizes))
        if "provider" in steps:
            results["provider"] = nights.measure_providers(bench, small, sizes.small_files,
                                                           sizes.provider_reps)
    except BenchFailed as err:
        progress(f"benchmark failed: {err}")
        return 1
    finally:
        proxy.stop()
        s3.stop()
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
    info = results["machine"]
    print(f"machine: {info['nproc']} x {info['cpu']}, {info['rclone']}, python "
          f"{info['python']}, load at start {info['load']}"
          f"{' (QUICK: smoke sizes, figures meaningless)' if args.quick else ''}")
    print()
    print(report(results))
    if args.json is not None:
        args.json.write_text(json.dumps(to_json(results), indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
