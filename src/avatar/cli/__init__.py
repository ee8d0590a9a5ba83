"""The ``avatar`` command line: serve, models, doctor, backup, one-shot voice commands, bench."""
