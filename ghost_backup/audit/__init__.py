"""Host audit: look, read-only, for long-lived S3/R2 keys where they end up on a real host.

``ghost-backup audit-host`` turns the promise "no R2 credentials on disk" into a check an
operator or a compliance job can run. It reads rclone configs, systemd units and drop-ins (and
the ``EnvironmentFile=`` / ``LoadCredential=`` files they name), compose ``.env*`` files next to
the source tree, shell profiles and histories, ``/etc/environment``, AWS-style credential files,
ghost-backup's own config, state and runtime directories, and any extra path given.

Four modules, one step each: ``classify`` (what looks like a key in a line of text; pure),
``plan`` (which places on a host hold keys in practice; pure), ``scan`` (the only effect:
reading files, never writing, never following directory symlinks, ``O_NOATIME`` where allowed,
at most ``MAX_FILE_BYTES`` per file) and ``report`` (text and JSON; pure).

A finding names the file, the line and the kind of value, never the value: only its
fingerprint (first 8 hex digits of its SHA-256) is shown, so an operator can tell which key it
is (``printf %s KEY | sha256sum | cut -c1-8``) without the report becoming a place where the
key is written down. The heuristics are listed in docs/security.md ("Host audit").
"""
