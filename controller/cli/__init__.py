"""``canaryctl``: the operator's command line.

Exit codes are part of the interface (scripts and CI use them):
0 success / promote, 1 unexpected failure, 2 bad input, 3 rollback (or rolled back /
failed, for ``watch``), 4 continue / undecided / timed out, 5 cluster unreachable,
6 not found, 7 permission denied, 8 conflicting action.
"""

from __future__ import annotations

import click

from controller import __version__

from .analyze_cmd import analyze
from .cluster_cmds import COMMANDS as CLUSTER_COMMANDS
from .judge_cmd import judge
from .plan_cmd import plan
from .plugins import plugin_commands
from .validate_cmd import validate

EXIT_OK = 0
EXIT_BAD_INPUT = 2


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="canaryctl")
def cli() -> None:
    """Canary releases for LLM-powered services, decided by anytime-valid quality guards."""


cli.add_command(validate)
cli.add_command(analyze)
cli.add_command(judge)
cli.add_command(plan)
for _command in (*CLUSTER_COMMANDS, *plugin_commands()):
    cli.add_command(_command)


def main() -> None:
    cli(prog_name="canaryctl")
