"""Project CLI: Kedro imports this module before it parses a project command.

It adds no command. It quiets the one warning Kedro 1.7 (pinned) printed on every run
of the form this project documents, ``kedro run --pipeline=train``: that the option
will go in a later release. ``--pipelines=train`` runs the same pipeline.
"""

import warnings

import click

warnings.filterwarnings("ignore", r"Option '--pipeline' is deprecated", Warning)

# No commands of its own: Kedro requires the group.
cli = click.Group(name="aeops")
