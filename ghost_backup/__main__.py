"""Allow ``python -m ghost_backup``."""

from ghost_backup.cli import entry_point

entry_point()
