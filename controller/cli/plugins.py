"""Commands that live outside the product package, found through entry points.

``canaryctl demo`` and ``canaryctl playground`` run test doubles (a Kubernetes API
emulator, a scripted judge). Those doubles are scaffolding and never ship in the product
wheel or image, so the product cannot import them. The companion distribution
``llm-canary-playground`` (``playground/`` in the repository) registers its commands in
the entry-point group :data:`GROUP`; without it each command still exists and says how to
install it, instead of failing with "no such command".
"""

from __future__ import annotations

from importlib.metadata import entry_points

import click

GROUP = "llm_canary.commands"
INSTALL_HINT = (
    "the playground is not installed; from a clone of the repository run "
    "`pip install -e ./playground` (it holds the local Kubernetes API emulator and the "
    "scripted judge, which never ship in the product)"
)
PLAYGROUND_COMMANDS = {
    "demo": "Run a whole canary rollout locally (needs the playground).",
    "playground": "Start or stop a local playground cluster (needs the playground).",
}


def _missing(name: str, help_text: str) -> click.Command:
    @click.command(name=name, help=help_text, context_settings={"ignore_unknown_options": True,
                                                               "allow_extra_args": True})
    def command() -> None:
        click.echo(f"canaryctl {name}: {INSTALL_HINT}", err=True)
        raise SystemExit(1)

    return command


def plugin_commands() -> list[click.Command]:
    """Registered commands, plus a hint for each playground command that is missing."""
    found: dict[str, click.Command] = {}
    for ep in entry_points(group=GROUP):
        command = ep.load()
        if isinstance(command, click.Command):
            found[command.name or ep.name] = command
    for name, help_text in PLAYGROUND_COMMANDS.items():
        found.setdefault(name, _missing(name, help_text))
    return [found[name] for name in sorted(found)]
