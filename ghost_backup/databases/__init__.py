"""Database dumps: what runs against MySQL/MariaDB (argv, environment, output checks), the
SQLite backup-API copy, the gzip stream the supervisor sits in, and the dump objects' names,
selection and retention. Running the children is :mod:`ghost_backup.host.process`;
sequencing them is :mod:`ghost_backup.commands.dumps`.
"""
