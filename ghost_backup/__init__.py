"""ghost-backup: nightly rclone backups to Cloudflare R2 with just-in-time credentials."""

__version__ = "0.1.0"
