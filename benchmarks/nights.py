"""`make bench`, issue 16: what a night costs at the S3 endpoint, counted request by request.

Two contestants sync the same tree into their own prefix of one ``rclone serve s3``, behind a
counting proxy (tests/support/countproxy.py), night after night:

  today  bare rclone with the flags ghost-backup passed before issue 16 (local source path,
         modtime comparison, tmpfs cache): the invocation the issue measured;
  ghost  ``ghost-backup run`` as shipped (hasher source, ``--checksum --s3-no-head
         --s3-no-head-object``, persistent hash cache), supervisor included.

Nights: first sync, two no-change nights, then 1 % of the files rewritten. The two
contestants alternate within each night. One server for the whole step: right after a
``serve s3`` restart the stored mtimes no longer match and the modtime mode re-uploads
everything (a loopback artefact, docs/performance.md).
"""

from __future__ import annotations

import math
import random
import shutil
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks.run import (
    GHOST_BACKUP,
    Bench,
    Sample,
    make_small_tree,
    mark,
    progress,
    run_timed,
    table,
    write_ghost_config,
)
from ghost_backup import rclone as rclone_cmd
from tests.support.countproxy import CLASS_A, CLASS_B, CountingProxy

NIGHTS = ("first sync", "no change", "no change 2", "1 % changed")
WHO = ("today", "ghost")
CLASS_A_USD, CLASS_B_USD = 4.50 / 1e6, 0.36 / 1e6  # R2 price per operation
EXTRAPOLATE_TO = 100_000
WALL_GOAL = 0.5  # no-change night, ghost / today, from 20,000 objects (issue 16): below that,
WALL_GOAL_FROM = 20_000  # the supervisor's fixed start-up is most of a night on loopback


@dataclass(frozen=True)
class NightSample:
    """One night of one contestant: time, CPU of the whole process tree, requests counted."""

    wall: float
    cpu: float
    requests: dict[str, int]
    peak_rss_kb: int | None = None

    def total(self) -> int:
        """Return every request of the night."""
        return sum(self.requests.values())

    def class_a(self) -> int:
        """Return the Class A operations (R2 bills LIST, PUT, POST)."""
        return sum(self.requests.get(k, 0) for k in CLASS_A)

    def class_b(self) -> int:
        """Return the Class B operations (HEAD, GET)."""
        return sum(self.requests.get(k, 0) for k in CLASS_B)


@dataclass
class NightsResult:
    """Every night of every contestant per tree size; source files read on a no-change night
    (strace, smallest size only) and the no-change nights' figures."""

    sizes: list[int]
    nights: dict[str, NightSample] = field(default_factory=dict)
    reads: dict[str, int] = field(default_factory=dict)

    def get(self, n: int, who: str, night: str) -> NightSample:
        """Return one night's sample."""
        return self.nights[f"{n}/{who}/{night}"]


def today_argv(argv: tuple[str, ...], source: Path, work: Path) -> tuple[str, ...]:
    """Return ghost-backup's sync argv as it was before issue 16: the local source path, no
    cost flags, the cache in the (per-run) work directory."""
    cost = set(rclone_cmd.build_cost_flags())
    out: list[str] = []
    args = iter(argv)
    for arg in args:
        if arg in cost:
            continue
        out.append(arg)
        if arg == "--cache-dir":
            next(args)
            out.append(str(work / "cache"))
    out[2] = str(source)
    return tuple(out)


def _ghost_raw(bench: Bench, proxy: CountingProxy, source: Path, prefix: str,
               state: Path) -> dict[str, Any]:
    raw = bench.raw_config(source, prefix, {})
    raw["destination"]["endpoint"] = proxy.endpoint
    raw["state"] = {"dir": str(state)}
    return raw


def _run(bench: Bench, proxy: CountingProxy, who: str, source: Path, *, n: int,
         strace: Path | None = None) -> Sample:
    """Run one night of ``who`` on ``source`` into its own prefix (and state dir) for size n."""
    raw = _ghost_raw(bench, proxy, source, f"nights-{who}-{n}",
                     bench.root / f"nights-state-{who}-{n}")
    log = bench.root / f"nights-{who}.log"
    if who == "ghost":
        argv: tuple[str, ...] = (GHOST_BACKUP, "--config", str(write_ghost_config(bench, raw)),
                                 "run")
        env = bench.base_env()
    else:
        work = bench.root / "work"
        argv = today_argv(bench.sync_argv(raw), source, work)
        env = bench.base_env() | {
            "RCLONE_CONFIG_R2_ACCESS_KEY_ID": bench.s3.access_key_id,
            "RCLONE_CONFIG_R2_SECRET_ACCESS_KEY": bench.s3.secret_access_key,
        }
    if strace is not None:
        argv = ("strace", "-f", "-qq", "-e", "trace=openat", "-o", str(strace), *argv)
    return run_timed(argv, env, log, sample_rss=who == "ghost" and strace is None)


def count_content_reads(trace: Path, source: Path) -> int:
    """Count successful opens of regular files below ``source`` in an strace openat log."""
    count = 0
    for line in trace.read_text(errors="replace").splitlines():
        if (f'"{source}/' in line and " = -1 " not in line
                and Path(line.split('"', 2)[1]).is_file()):
            count += 1
    return count


def rewrite_some(source: Path, fraction: float, seed: int) -> int:
    """Rewrite ``fraction`` of the files under ``source`` with new content; return how many."""
    files = sorted(p for p in source.rglob("*") if p.is_file())
    rnd = random.Random(seed)
    picked = rnd.sample(files, max(1, int(len(files) * fraction)))
    for path in picked:
        path.write_bytes(rnd.randbytes(rnd.randint(1, 4096)))
    return len(picked)


def measure_nights(bench: Bench, sizes: list[int]) -> NightsResult:
    """Run every night for every size and contestant; count requests at the proxy."""
    proxy = CountingProxy(bench.s3.port).start()
    result = NightsResult(sizes)
    try:
        for n in sizes:
            master = make_small_tree(bench.root / f"nights-master-{n}", n, seed=16)
            sources = {}
            for who in WHO:
                sources[who] = bench.root / f"nights-{who}-{n}"
                shutil.copytree(master, sources[who])  # copy2: same mtimes for both
            shutil.rmtree(master)
            for i, night in enumerate(NIGHTS):
                if night == "1 % changed":
                    time.sleep(1.1)  # a new mtime, whatever the filesystem's resolution
                    for who in WHO:
                        rewrite_some(sources[who], 0.01, seed=7)
                for who in WHO if i % 2 == 0 else WHO[::-1]:
                    proxy.take()
                    sample = _run(bench, proxy, who, sources[who], n=n)
                    result.nights[f"{n}/{who}/{night}"] = NightSample(
                        sample.wall, sample.cpu, proxy.take(), sample.peak_rss_kb)
                progress(f"  nights N={n} {night}: " + ", ".join(
                    f"{w} {result.get(n, w, night).wall:.2f}s "
                    f"{result.get(n, w, night).total()} req" for w in WHO))
            if n == min(sizes) and shutil.which("strace"):
                for who in WHO:  # one more no-change night, untimed, to count file reads
                    trace = bench.root / f"nights-{who}.trace"
                    _run(bench, proxy, who, sources[who], n=n, strace=trace)
                    result.reads[who] = count_content_reads(trace, sources[who])
                proxy.take()
            for who in WHO:
                shutil.rmtree(sources[who])
                bench.drop_prefix(f"nights-{who}-{n}")
    finally:
        proxy.stop()
    return result


def _fmt(sample: NightSample) -> list[str]:
    r = sample.requests
    return [str(r.get("LIST", 0)), str(r.get("HEAD", 0)), str(r.get("GET", 0)),
            str(r.get("PUT", 0) + r.get("PUT-part", 0)),
            str(sum(v for k, v in r.items() if k not in ("LIST", "HEAD", "GET", "PUT",
                                                          "PUT-part"))),
            f"{sample.class_a()}/{sample.class_b()}", f"{sample.wall:.2f}", f"{sample.cpu:.2f}"]


def _per_night(result: NightsResult, n: int) -> tuple[NightSample, NightSample]:
    """Return (today, ghost) for the second no-change night (the hash cache is warm)."""
    return result.get(n, "today", "no change 2"), result.get(n, "ghost", "no change 2")


def report_nights(result: NightsResult) -> str:
    """Return the request table, the goals and the cost per night."""
    rows = []
    for n in result.sizes:
        for night in NIGHTS:
            today, ghost = result.get(n, "today", night), result.get(n, "ghost", night)
            for who, sample in (("today", today), ("ghost", ghost)):
                rows.append([f"{n:,}", night, who, *_fmt(sample),
                             f"{ghost.wall / today.wall:.2f}" if who == "ghost" else ""])
    parts = ["requests per night at the loopback endpoint (counting proxy); today = bare "
             "rclone with the pre-issue-16 flags,\nghost = ghost-backup run as shipped "
             "(CPU: whole process tree, rclone included):\n" + table(
                 ["N", "night", "who", "LIST", "HEAD", "GET", "PUT", "other", "A/B",
                  "wall s", "CPU s", "ghost/today wall"], rows)]
    rows = []
    for n in result.sizes:
        today, ghost = _per_night(result, n)
        limit = math.ceil(n / 1000) + 5
        reads = result.reads.get("ghost") if n == min(result.sizes) else None
        ratio = ghost.wall / today.wall
        rows.append([f"{n:,}", f"{ghost.total()} (today {today.total()})", f"<= {limit}",
                     mark(ghost.total() <= limit), str(ghost.class_b()), mark(ghost.class_b() == 0),
                     "-" if reads is None else f"{reads} (today {result.reads.get('today')})",
                     "-" if reads is None else mark(reads == 0),
                     f"{ratio:.2f}",
                     mark(ratio <= WALL_GOAL) if n >= WALL_GOAL_FROM else "(goal at 20,000)"])
    parts.append("goals on a no-change night (the second, hash cache warm): requests <= "
                 "ceil(N/1000)+5, HEAD+GET = 0,\nsource files read = 0 (strace, smallest N), "
                 f"wall <= {WALL_GOAL}x today:\n" + table(
                     ["N", "requests", "limit", "", "HEAD+GET", "", "files read", "",
                      "wall ghost/today", ""], rows))
    parts.append(report_cost(result))
    peaks = {n: max(result.get(n, "ghost", x).peak_rss_kb or 0 for x in NIGHTS)
             for n in result.sizes}
    if any(peaks.values()):
        parts.append("supervisor peak RSS over the nights (VmHWM of ghost-backup, rclone "
                     "excluded), MiB: " + ", ".join(
                         f"N={n:,}: {kb / 1024:.1f}" for n, kb in peaks.items()))
    return "\n\n".join(parts)


def report_cost(result: NightsResult) -> str:
    """Return Class A/B per no-change night and per 30 nights at 1k, 20k and 100k objects;
    sizes not measured are extrapolated linearly from the largest two measured."""
    measured = {n: _per_night(result, n) for n in result.sizes}
    wanted = sorted({*result.sizes, 1000, 20_000, EXTRAPOLATE_TO})
    rows = []
    for n in wanted:
        if n in measured:
            today, ghost = measured[n]
            ta, tb, ga, gb = today.class_a(), today.class_b(), ghost.class_a(), ghost.class_b()
            how = "measured"
        elif len(measured) >= 2:
            (n1, (t1, g1)), (n2, (t2, g2)) = sorted(measured.items())[-2:]

            def line(v1: int, v2: int, at: int = n, lo: int = n1, hi: int = n2) -> int:
                return round(v1 + (v2 - v1) * (at - lo) / (hi - lo))

            ta, tb = line(t1.class_a(), t2.class_a()), line(t1.class_b(), t2.class_b())
            ga, gb = line(g1.class_a(), g2.class_a()), line(g1.class_b(), g2.class_b())
            how = f"extrapolated from {n1:,}/{n2:,}"
        else:
            continue
        saved = 30 * ((ta - ga) * CLASS_A_USD + (tb - gb) * CLASS_B_USD)
        rows.append([f"{n:,}", how, f"{ta:,} / {tb:,}", f"{ga:,} / {gb:,}",
                     f"{30 * (tb - gb):,}", f"${saved:.2f}"])
    return ("R2 operations per no-change night, Class A (LIST, PUT) / Class B (HEAD, GET); "
            "$4.50 / $0.36 per million,\nbefore the free tier:\n" + table(
                ["objects", "", "today A / B", "ghost A / B", "B saved per 30 nights",
                 "$ saved per 30 nights"], rows))


# --- provider profiles: Cloudflare vs Other ------------------------------------------------

@dataclass
class ProviderResult:
    """rclone's CPU seconds (wait4, rclone alone) per provider profile, alternating reps."""

    files: int
    first_sync: dict[str, list[float]]
    no_change: dict[str, list[float]]


def measure_providers(bench: Bench, source: Path, files: int, reps: int) -> ProviderResult:
    """Bare rclone with the pre-issue-16 flags (a HEAD per object, as the issue measured),
    provider ``Other`` vs ``Cloudflare``: a first sync and a no-change sync, alternating."""
    providers = ("Other", "Cloudflare")
    first: dict[str, list[float]] = {p: [] for p in providers}
    again: dict[str, list[float]] = {p: [] for p in providers}
    env = bench.base_env() | {
        "RCLONE_CONFIG_R2_ACCESS_KEY_ID": bench.s3.access_key_id,
        "RCLONE_CONFIG_R2_SECRET_ACCESS_KEY": bench.s3.secret_access_key,
    }
    for rep in range(reps):
        for provider in providers if rep % 2 == 0 else providers[::-1]:
            prefix = bench.fresh_prefix(f"provider-{provider}")
            raw = bench.raw_config(source, prefix, {})
            raw["destination"]["provider"] = provider
            argv = today_argv(bench.sync_argv(raw), source, bench.root / "work")
            log = bench.root / "provider.log"
            first[provider].append(run_timed(argv, env, log).cpu)
            again[provider].append(run_timed(argv, env, log).cpu)
            bench.drop_prefix(prefix)
        progress(f"  provider rep {rep + 1}/{reps} done")
    return ProviderResult(files, first, again)


def report_providers(result: ProviderResult) -> str:
    """Return the Cloudflare/Other CPU table."""
    rows = []
    for name, data in (("first sync", result.first_sync), ("no change", result.no_change)):
        other, cloudflare = data["Other"], data["Cloudflare"]
        ratios = [c / o for c, o in zip(cloudflare, other, strict=True)]
        rows.append([name, " ".join(f"{v:.2f}" for v in other),
                     " ".join(f"{v:.2f}" for v in cloudflare),
                     f"{statistics.median(ratios):.2f}"])
    return (f"provider profile, bare rclone (pre-issue-16 flags), {result.files} small files, "
            "rclone CPU seconds per rep:\n" + table(
                ["sync", "Other", "Cloudflare", "Cloudflare/Other (median)"], rows))

