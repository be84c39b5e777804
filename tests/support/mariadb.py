"""A throwaway MariaDB server on a private socket with its own datadir (tests, demo, bench).

``mariadb-install-db`` runs once per test session into a template datadir; each server is a
copy of it (0.3 s plus 0.13 s to start on an idle machine, a few seconds under load). The
socket path must stay below 108 bytes (``sun_path``): the server lives in a short
``/tmp`` directory, not in pytest's long ``tmp_path``. The harness passes ``--no-defaults``
to its own clients (never to ghost-backup's), so no system my.cnf interferes.

Also here: a Ghost-like schema (posts, revisions, members, settings, a trigger, a procedure,
an event, a blob), a bulk loader, and a writer thread that keeps committing multi-table
transactions, each keeping invariants a torn dump would break. ``a0_gate`` is a table no
writer touches, dumped first (dumps go in name order): a test that holds a write lock on it
stops a dump right after its snapshot began, before it read anything the writer changes.
"""

from __future__ import annotations

import random
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

CLIENT = shutil.which("mariadb") or "mysql"


def install_template(target: Path) -> Path:
    """Create a fresh datadir at ``target`` (root: socket login without password)."""
    subprocess.run(
        ["mariadb-install-db", "--no-defaults", f"--datadir={target}", "--user=root",
         "--auth-root-authentication-method=normal", "--skip-test-db", "--skip-name-resolve",
         "--innodb-log-file-size=8M"],
        check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    return target


class ThrowawayMariaDB:
    """One server: ``start()`` copies the template, starts ``mariadbd``, waits for it."""

    def __init__(self, template: Path) -> None:
        self.base = Path(tempfile.mkdtemp(prefix="gbdb-", dir="/tmp"))
        self.datadir = self.base / "data"
        self.socket = self.base / "s"
        self.template = template
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 60.0) -> ThrowawayMariaDB:
        """Copy the template datadir and start the server; return self once it answers."""
        shutil.copytree(self.template, self.datadir, symlinks=True)
        started = time.monotonic()
        self.proc = subprocess.Popen(
            ["mariadbd", "--no-defaults", f"--datadir={self.datadir}",
             f"--socket={self.socket}", "--skip-networking", "--user=root",
             f"--pid-file={self.base / 'pid'}", f"--log-error={self.base / 'err.log'}",
             "--innodb-buffer-pool-size=64M", "--innodb-log-file-size=8M", "--skip-log-bin",
             "--event-scheduler=OFF",
             "--max-allowed-packet=64M", "--character-set-server=utf8mb4",
             "--collation-server=utf8mb4_general_ci"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        while time.monotonic() - started < timeout:
            if self.proc.poll() is not None:
                raise RuntimeError((self.base / "err.log").read_text()[-2000:])
            ping = subprocess.run(
                ["mariadb-admin", "--no-defaults", f"--socket={self.socket}", "-uroot", "ping"],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
            if ping.returncode == 0:
                return self
            time.sleep(0.05)
        self.stop()
        raise TimeoutError("mariadbd did not become ready")

    def stop(self) -> None:
        """Shut the server down (SIGTERM: clean) and remove its directory."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        shutil.rmtree(self.base, ignore_errors=True)

    def client_argv(self, *extra: str, user: str = "root") -> list[str]:
        """Return the harness client's argv (``--no-defaults``, this socket)."""
        return [CLIENT, "--no-defaults", f"--socket={self.socket}", f"-u{user}",
                "--default-character-set=utf8mb4", *extra]

    def sql(self, text: str) -> list[list[str]]:
        """Run ``text`` as root; return the rows (tab-separated fields)."""
        out = subprocess.run(self.client_argv("-N", "-B", "--max-allowed-packet=64M"),
                             input=text.encode(), stdout=subprocess.PIPE, check=True).stdout
        return [line.split("\t") for line in out.decode().splitlines()]

    def create_user(self, user: str, password: str, *, restore: bool = False) -> None:
        """Create a dump user with the grants a consistent dump needs; ``restore``: all.

        Restoring needs more than a dump: the dump's triggers, routines and events carry
        their DEFINER, and only a user with SUPER (root, in practice) may create those.
        """
        grants = "ALL PRIVILEGES" if restore else (
            "SELECT, SHOW VIEW, TRIGGER, LOCK TABLES, EVENT, RELOAD, PROCESS")
        self.sql(f"CREATE USER '{user}'@'localhost' IDENTIFIED BY '{password}'; "
                 f"GRANT {grants} ON *.* TO '{user}'@'localhost';")

    def checksums(self, db: str) -> dict[str, str]:
        """Return ``CHECKSUM TABLE`` of every base table of ``db``."""
        return checksums(self.sql, db)


def checksums(sql: Callable[[str], list[list[str]]], db: str) -> dict[str, str]:
    """Return ``CHECKSUM TABLE`` of every base table of ``db``, run through ``sql``."""
    tables = [r[0] for r in sql(
        f"SELECT table_name FROM information_schema.tables WHERE table_schema='{db}' "
        "AND table_type='BASE TABLE' ORDER BY 1")]
    rows = sql("CHECKSUM TABLE " + ", ".join(f"`{db}`.`{t}`" for t in tables))
    return {r[0]: r[1] for r in rows}


class Session:
    """One long-lived client connection, for statements inside one transaction."""

    def __init__(self, db: ThrowawayMariaDB) -> None:
        self.p = subprocess.Popen(db.client_argv("-N", "-B", "--unbuffered"),
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)

    def q(self, sql: str) -> list[list[str]]:
        """Run ``sql``; return its rows."""
        assert self.p.stdin is not None
        assert self.p.stdout is not None
        self.p.stdin.write(sql.rstrip().rstrip(";") + ";\nSELECT '__END__';\n")
        self.p.stdin.flush()
        out = []
        while (line := self.p.stdout.readline()).strip() != "__END__":
            if not line:
                raise RuntimeError("client died")
            out.append(line.rstrip("\n").split("\t"))
        return out

    def close(self) -> None:
        """End the session."""
        assert self.p.stdin is not None
        self.p.stdin.close()
        self.p.wait(10)


SCHEMA = r"""
CREATE DATABASE IF NOT EXISTS ghost CHARACTER SET utf8mb4 COLLATE utf8mb4_general_ci;
USE ghost;
CREATE TABLE a0_gate (id int PRIMARY KEY) ENGINE=InnoDB;
CREATE TABLE posts (id varchar(24) PRIMARY KEY, uuid varchar(36) NOT NULL, title varchar(2000),
  slug varchar(191) NOT NULL UNIQUE, lexical longtext, html longtext, plaintext longtext,
  status varchar(50) NOT NULL DEFAULT 'published', revision int NOT NULL DEFAULT 0,
  created_at datetime NOT NULL, updated_at datetime) ENGINE=InnoDB;
CREATE TABLE post_revisions (id bigint AUTO_INCREMENT PRIMARY KEY, post_id varchar(24) NOT NULL,
  lexical longtext, created_at datetime NOT NULL, KEY (post_id)) ENGINE=InnoDB;
CREATE TABLE tags (id varchar(24) PRIMARY KEY, name varchar(191), slug varchar(191) UNIQUE);
CREATE TABLE posts_tags (id varchar(24) PRIMARY KEY, post_id varchar(24), tag_id varchar(24),
  sort_order int unsigned DEFAULT 0);
CREATE TABLE members (id bigint AUTO_INCREMENT PRIMARY KEY, uuid varchar(36), email varchar(191)
  UNIQUE, name varchar(191), created_at datetime NOT NULL) ENGINE=InnoDB;
CREATE TABLE settings (id varchar(24) PRIMARY KEY, `key` varchar(50) UNIQUE, value text);
CREATE TABLE uploads (id int AUTO_INCREMENT PRIMARY KEY, data mediumblob);
CREATE TABLE actions (id bigint AUTO_INCREMENT PRIMARY KEY, event varchar(50), resource_id bigint);
CREATE TRIGGER members_ai AFTER INSERT ON members FOR EACH ROW
  INSERT INTO actions(event, resource_id) VALUES ('member.added', NEW.id);
CREATE PROCEDURE member_count() SELECT COUNT(*) FROM members;
CREATE EVENT purge_actions ON SCHEDULE EVERY 1 DAY DISABLE DO DELETE FROM actions WHERE id < 0;
INSERT INTO settings VALUES ('s1', 'members_total', '0'), ('s2', 'title', 'Ghost ✓ 日本語 😀');
INSERT INTO uploads(data) VALUES (UNHEX('00FF0A0D275C22001A')), (RANDOM_BYTES(1024));
"""

_WORDS = ("ghost", "publishing", "lorem", "ipsum", "dolor", "sit", "amet", "newsletter",
          "member", "subscribe", "editor", "card", "image", "gallery", "bookmark", "callout",
          "toggle", "header", "footer", "product", "signup", "paid", "free", "quote",
          "'single'", '"double"', "back\\slash", "ünïcödé", "日本語", "😀")

INVARIANTS = """
SELECT (SELECT value FROM ghost.settings WHERE `key`='members_total') = (SELECT COUNT(*) FROM ghost.members),
       (SELECT COUNT(*) FROM ghost.posts p WHERE p.revision <> (SELECT COUNT(*) FROM ghost.post_revisions r WHERE r.post_id = p.id)) = 0,
       (SELECT COUNT(*) FROM ghost.actions) = (SELECT COUNT(*) FROM ghost.members)
"""  # noqa: E501


def _text(rng: random.Random, n_words: int) -> str:
    return " ".join(rng.choice(_WORDS) for _ in range(n_words))


def _q(s: str) -> str:
    return "'" + s.replace("\\", "\\\\").replace("'", "\\'") + "'"


def load_ghostlike(db: ThrowawayMariaDB, n_posts: int, seed: int = 1) -> None:
    """Create the schema and bulk-load ``n_posts`` posts (~3 KB of SQL each)."""
    db.sql(SCHEMA)
    rng = random.Random(seed)
    chunks = ["USE ghost;"]
    for start in range(0, n_posts, 500):
        rows = []
        for i in range(start, min(n_posts, start + 500)):
            body = _text(rng, 120)
            html = "<p>" + body.replace(" ", "</p><p>", 10) + "</p>"
            lexical = '{"root":{"children":[{"text":' + _q(body)[1:-1] + '}]}}'
            rows.append(f"('{i:024x}', UUID(), {_q(_text(rng, 6))}, 'post-{i}', {_q(lexical)}, "
                        f"{_q(html)}, {_q(body)}, 'published', 0, NOW(), NOW())")
        chunks.append("INSERT INTO posts VALUES " + ",\n".join(rows) + ";")
    chunks.append("INSERT INTO tags VALUES " + ",".join(
        f"('t{i}', 'Tag {i}', 'tag-{i}')" for i in range(50)) + ";")
    subprocess.run(db.client_argv("--max-allowed-packet=64M"),
                   input="\n".join(chunks).encode(), check=True)


class Writer(threading.Thread):
    """Keeps committing small multi-table transactions until stopped; ``gate`` pauses it."""

    def __init__(self, db: ThrowawayMariaDB, n_posts: int) -> None:
        super().__init__(daemon=True)
        self.s = Session(db)
        self.gate = threading.Lock()
        self.halt = threading.Event()
        self.commits = 0
        self.n_posts = n_posts
        self.rng = random.Random(7)

    def run(self) -> None:
        self.s.q("USE ghost")
        while not self.halt.is_set():
            with self.gate:
                k = self.commits
                pid = f"{self.rng.randrange(self.n_posts):024x}"
                self.s.q(
                    "START TRANSACTION;"
                    "INSERT INTO members(uuid,email,name,created_at) VALUES "
                    f"(UUID(), 'm{k}@example.com', 'M {k}', NOW());"
                    "UPDATE settings SET value = value + 1 WHERE `key`='members_total';"
                    "INSERT INTO post_revisions(post_id, lexical, created_at) VALUES "
                    f"('{pid}', 'rev {k}', NOW());"
                    f"UPDATE posts SET revision = revision + 1, html = CONCAT(html, '<p>{k}</p>'),"
                    f" updated_at = NOW() WHERE id = '{pid}';"
                    f"INSERT INTO posts_tags VALUES ('pt{k}', '{pid}', 't{k % 50}', {k});"
                    "COMMIT")
                self.commits += 1
            time.sleep(0.001)
        self.s.close()

    def stop(self) -> None:
        """Stop writing and close the session."""
        self.halt.set()
        self.join(20)
