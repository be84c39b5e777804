"""One module per command (``run``, ``check``, ``restore``, ``verify``, ``status``, ``alert``,
``audit_host``), plus what they share (``context``: deps, run id, the lifecycle, the audited
credential fetch) and the source and restore-target guards (``guards``)."""
