"""Which rclone flags ``rclone.extra_args`` may carry (pure).

``extra_args`` come last on the sync's command line, and rclone (pflag) lets the last
occurrence of a flag win: ``--max-delete=-1`` after our ``--max-delete 100`` removes the
deletion guard, a second ``--backup-dir`` redirects the history, ``-x=false`` undoes
``--one-file-system``, and single-letter flags cluster (``-vn`` is ``-v -n``). Measured with
rclone 1.75.2 (docs/configuration.md, "extra_args").

So extra arguments are checked against an **allow-list** of tuning flags (bandwidth, timeouts,
retries, concurrency, TLS): a flag that is not on it is refused, and the ones that would
defeat a guard are refused with the reason. Names are matched whatever the value or its form
(``--flag=value`` or ``--flag value``); allowed flags that take a value consume the next
argument, so arity is known; any other bare argument is refused.
"""

from __future__ import annotations

# Tuning flags that change how fast or how politely rclone works, never what it transfers,
# deletes or keeps. True: the flag takes a value.
ALLOWED_FLAGS: dict[str, bool] = {
    "bwlimit": True, "bwlimit-file": True, "tpslimit": True, "tpslimit-burst": True,
    "buffer-size": True, "contimeout": True, "timeout": True, "expect-continue-timeout": True,
    "retries": True, "retries-sleep": True, "low-level-retries": True,
    "order-by": True, "check-first": False, "max-backlog": True, "max-buffer-memory": True,
    "max-connections": True, "transfers": True, "checkers": True, "use-mmap": False,
    "multi-thread-streams": True, "multi-thread-cutoff": True,
    "multi-thread-chunk-size": True, "multi-thread-write-buffer-size": True,
    "user-agent": True, "bind": True, "disable-http2": False, "ca-cert": True,
    "s3-upload-concurrency": True, "s3-chunk-size": True, "s3-upload-cutoff": True,
}

# Why the flags that matter most are refused (exact names, then families by prefix).
_GUARD = "it would override the deletion and history guards"
_SEEN = "it changes what rclone sees, so the source guards would have judged another tree"
_COMPARE = "it changes which edits are transferred and archived"
_DEADLINE = "it would let rclone outlive its credentials"
_OURS = "ghost-backup sets it itself"
_DENIED: dict[str, str] = {
    "max-delete": _GUARD + " (set rclone.max_delete)", "max-delete-size": _GUARD,
    "backup-dir": _GUARD, "suffix": _GUARD, "suffix-keep-extension": _GUARD,
    "compare-dest": _GUARD, "copy-dest": _GUARD, "track-renames": _GUARD,
    "track-renames-strategy": _GUARD, "ignore-errors": _GUARD,
    "one-file-system": _SEEN + " (set source.one_file_system)", "copy-links": _SEEN,
    "links": _SEEN, "skip-links": _SEEN, "max-depth": _SEEN, "hash-filter": _SEEN,
    "min-size": _SEEN, "max-size": _SEEN, "min-age": _SEEN, "max-age": _SEEN,
    "ignore-case": _SEEN,
    "ignore-existing": _COMPARE, "ignore-times": _COMPARE, "size-only": _COMPARE,
    "update": _COMPARE, "ignore-size": _COMPARE, "immutable": _COMPARE,
    "no-check-dest": _COMPARE, "modify-window": _COMPARE, "checksum": _COMPARE,
    "fast-list": _OURS + " (set rclone.fast_list)",
    "max-duration": _DEADLINE, "cutoff-mode": _DEADLINE, "max-transfer": _DEADLINE,
    "dry-run": "a dry run would record a backup that never happened",
    "interactive": "the unit has no terminal",
    "config": _OURS, "password-command": _OURS, "ask-password": _OURS,
    "no-check-certificate": "it turns off TLS verification",
}
_DENIED_FAMILIES: tuple[tuple[str, str], ...] = (
    ("delete-", _GUARD), ("filter", _SEEN + " (set source.exclude)"),
    ("include", _SEEN), ("exclude", _SEEN + " (set source.exclude)"), ("files-from", _SEEN),
    ("metadata-", _SEEN), ("local-", _SEEN), ("dump", "it can print the keys"),
    ("rc", _OURS), ("log-", _OURS), ("stats", _OURS), ("s3-", _OURS),
)
# rclone's single-letter aliases, so a refusal names the long flag.
SHORT_ALIASES: dict[str, str] = {
    "n": "dry-run", "i": "interactive", "v": "verbose", "q": "quiet", "c": "checksum",
    "I": "ignore-times", "u": "update", "x": "one-file-system", "L": "copy-links",
    "l": "links", "f": "filter", "P": "progress", "M": "metadata", "h": "help",
    "V": "version", "F": "format", "s": "separator", "t": "timeformat", "R": "recursive",
}


def _refusal(name: str) -> str:
    reason = _DENIED.get(name)
    if reason is None:
        reason = next((why for prefix, why in _DENIED_FAMILIES if name.startswith(prefix)), None)
    if reason is None:
        reason = ("it is not one of the tuning flags extra_args may carry "
                  "(docs/runbook.md, \"Exit 78: rclone.extra_args\")")
    return f"--{name} is refused: {reason}"


def find_refused_flag(args: tuple[str, ...]) -> str | None:
    """Given ``rclone.extra_args``, return why the first refused argument is refused (None: ok).

    Every flag is matched by its name: ``--name``, ``--name=value``, ``--name value`` (for
    allowed flags that take a value), and single-dash clusters letter by letter (``-vn`` is
    ``-v`` and ``-n``, none of them allowed). A bare argument that is no flag's value is
    refused: it would become a path on rclone's command line.
    """
    index = 0
    while index < len(args):
        arg = args[index]
        index += 1
        if arg.startswith("--") and len(arg) > 2:
            name, has_value, _ = arg[2:].partition("=")
            if name not in ALLOWED_FLAGS or name in _DENIED:
                return _refusal(name)
            if ALLOWED_FLAGS[name] and not has_value:
                if index >= len(args):
                    return f"--{name} needs a value"
                index += 1
            continue
        if arg.startswith("-") and len(arg) > 1:
            letters = arg[1:].partition("=")[0]
            first = letters[0]
            if first in SHORT_ALIASES:
                return f"-{first} ({_refusal(SHORT_ALIASES[first])})"
            return f"-{first} is refused: single-letter flags are not accepted in extra_args"
        # Not quoted: a stray value could be anything, a key included.
        return (f"argument {index} is refused: a bare argument (no flag before it takes a "
                "value) would become a path for rclone")
    return None
