"""The ``flywheel`` command line: mounts the commands of every package (``cli.main:app``)."""
