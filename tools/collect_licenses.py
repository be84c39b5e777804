"""Copy the licence notices of everything the ghost-backup bundle ships into one directory
(``packaging/sysext/build.sh`` puts it at ``usr/share/licenses/ghost-backup/`` in the image).

Run with the build's virtualenv: ``python -m tools.collect_licenses DEST``. It walks
ghost-backup's runtime requirements (extras left out, as the bundle leaves them out), copies
each distribution's licence files (``LICENSE*``, ``COPYING*``, ``NOTICE*``, ``licenses/``)
to ``DEST/<name>/``, adds the CPython licence (libpython is in the bundle) and PyInstaller's
(its bootloader is the executable), and writes ``DEST/THIRD-PARTY.txt`` listing each one with
its version and declared licence. Fails if a shipped distribution has no licence file.
"""

from __future__ import annotations

import importlib.metadata as md
import re
import shutil
import sys
import sysconfig
from pathlib import Path

_LICENCE_FILE = re.compile(r"(^|/)(LICEN[CS]E|COPYING|NOTICE)[^/]*$|/licenses/", re.IGNORECASE)


def _key(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def shipped_distributions(root: str = "ghost-backup") -> list[md.Distribution]:
    """Return ``root``'s runtime dependencies, recursively, sorted by name (root excluded)."""
    seen: dict[str, md.Distribution] = {}
    todo = [root]
    while todo:
        name = todo.pop()
        if _key(name) in seen:
            continue
        dist = md.distribution(name)
        seen[_key(name)] = dist
        for requirement in dist.requires or []:
            if "extra ==" not in requirement:
                todo.append(re.split(r"[ ;<>=!~\[(]", requirement, maxsplit=1)[0])
    del seen[_key(root)]
    return [seen[key] for key in sorted(seen)]


def _copy_licences(dist: md.Distribution, dest: Path) -> list[str]:
    copied = []
    for entry in sorted(dist.files or [], key=str):
        if _LICENCE_FILE.search(str(entry)):
            target = dest / Path(str(entry)).name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(Path(str(dist.locate_file(entry))), target)
            copied.append(target.name)
    return copied


def main(dest: Path) -> int:
    """Collect every notice into ``dest``; return 0, or 1 if one is missing."""
    dest.mkdir(parents=True, exist_ok=True)
    lines = ["Third-party software in the ghost-backup bundle, with its licence files here.", ""]
    missing = []
    for dist in [*shipped_distributions(), md.distribution("pyinstaller")]:
        name = _key(dist.metadata["Name"])
        files = _copy_licences(dist, dest / name)
        if not files:
            missing.append(name)
        declared = dist.metadata.get("License-Expression") or dist.metadata.get("License") or ""
        lines.append(f"{name} {dist.version}: {declared.splitlines()[0] if declared else '-'}"
                     f" ({', '.join(f'{name}/{f}' for f in files)})")
    python_licence = Path(sysconfig.get_path("stdlib")) / "LICENSE.txt"
    if python_licence.is_file():
        (dest / "python").mkdir(exist_ok=True)
        shutil.copyfile(python_licence, dest / "python" / "LICENSE.txt")
        lines.append(f"python {sys.version.split()[0]}: PSF-2.0 (python/LICENSE.txt)")
    else:
        missing.append("python")
    (dest / "THIRD-PARTY.txt").write_text("\n".join(lines) + "\n")
    if missing:
        print(f"collect_licenses: no licence file for {', '.join(missing)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1])))
