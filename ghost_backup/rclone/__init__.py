"""Everything about rclone that is pure: the config text, every argv, the child's allowlisted
environment, exit-code and output classification (``command``, ``outcome``, ``listing``) and
its JSON log lines (``progress``). Running it is :mod:`ghost_backup.host.process`.

The names below are the package's public surface, so call sites read ``rclone.build_sync_argv``.
"""

from ghost_backup.rclone.command import *  # noqa: F403
from ghost_backup.rclone.inventory import *  # noqa: F403
from ghost_backup.rclone.listing import *  # noqa: F403
from ghost_backup.rclone.outcome import *  # noqa: F403
