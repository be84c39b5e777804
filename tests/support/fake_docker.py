#!/usr/bin/env python3
"""Stand-in `docker`/`podman` (no daemon on these machines): records argv, runs `exec`.

It keeps the parts of the engine's contract ghost-backup relies on:
- `exec [-i] [-u U] [-e K] [-w W] CONTAINER CMD...` runs CMD with the *container's*
  environment only (nothing of the caller's), stdin only with `-i` (else /dev/null), and
  passes CMD's exit code through; `-t` is refused (a TTY would turn "\\n" into "\\r\\n");
- an unknown container: `Error response from daemon: No such container: NAME`, exit 1;
- `inspect -f '{{.State.Running}}' C` prints `true`/`false`.

Environment (set by the test, never by ghost-backup):
  FAKE_DOCKER_RECORD   file: one JSON argv per line is appended for every call
  FAKE_DOCKER_DIR      dir: <container>.json = {"env": {...}, "socket": "...", "running": true}
The container's default client socket is stood in for by MYSQL_HOME pointing at a my.cnf
whose [client] socket is the throwaway server's (MariaDB 10.11 clients ignore
MYSQL_UNIX_PORT).
"""

import json
import os
import sys
from pathlib import Path

argv = sys.argv
with Path(os.environ["FAKE_DOCKER_RECORD"]).open("a", encoding="utf-8") as rec:
    rec.write(json.dumps(argv) + "\n")
cdir = Path(os.environ["FAKE_DOCKER_DIR"])
args = argv[1:]


def container(name: str) -> dict:
    """Return the container's description, or exit like the engine does."""
    f = cdir / f"{name}.json"
    if not f.exists():
        print(f"Error response from daemon: No such container: {name}", file=sys.stderr)
        sys.exit(1)
    return json.loads(f.read_text(encoding="utf-8"))


if args[:1] == ["inspect"]:
    c = container(args[-1])
    print("true" if c.get("running", True) else "false")
    sys.exit(0)
if args[:1] != ["exec"]:
    print(f"fake docker: unsupported command {args[:1]}", file=sys.stderr)
    sys.exit(125)
rest = args[1:]
interactive = False
while rest and rest[0].startswith("-"):
    opt = rest.pop(0)
    if opt in ("-t", "--tty", "-it", "-ti"):
        print("fake docker: -t would mangle a binary stream", file=sys.stderr)
        sys.exit(125)
    if opt in ("-i", "--interactive"):
        interactive = True
    elif opt in ("-u", "--user", "-e", "--env", "-w", "--workdir"):
        rest.pop(0)
name, cmd = rest[0], rest[1:]
c = container(name)
if not c.get("running", True):
    print(f"Error response from daemon: container {name} is not running", file=sys.stderr)
    sys.exit(1)
home = cdir / f"{name}.mysqlhome"
home.mkdir(exist_ok=True)
(home / "my.cnf").write_text(f"[client]\nsocket={c['socket']}\n", encoding="utf-8")
env = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
       "MYSQL_HOME": str(home), **c["env"]}
if not interactive:
    fd = os.open(os.devnull, os.O_RDONLY)
    os.dup2(fd, 0)
os.execvpe(cmd[0], cmd, env)  # noqa: S606 -- the container's command, as docker runs it
