"""Project CLI: Kedro imports this module before it parses a project command.

It adds no command, and hands ``python -m aeops`` Kedro's own ``run``. It quiets the
one warning Kedro 1.7 (pinned) printed on every run of the form this project
documents, ``kedro run --pipeline=train``: that the option will go in a later
release. ``--pipelines=train`` runs the same pipeline.
"""

import warnings

import click
from kedro.framework.cli.project import run

warnings.filterwarnings("ignore", r"Option '--pipeline' is deprecated", Warning)

# No commands of its own: Kedro requires the group.
cli = click.Group(name="aeops")

# ``python -m aeops`` runs the ``run`` command its project's ``cli`` module names:
# Kedro's own.
__all__ = ["cli", "run"]
