"""``datafree <command> --help``: the purpose first, the main keys, two examples; every key and example real."""
import re

import pytest
from datafree import cli
from datafree.export.inspect import parser
from datafree.help import HELP
from recipe_keys import has_key


def _has(cfg, key: str) -> bool:
    """``key`` is in the composed recipe, or is one of its config groups (``experiment``)."""
    return has_key(cfg, key) or key in cfg.hydra.runtime.choices


@pytest.mark.parametrize("command", list(cli.COMMANDS))
def test_every_key_and_example_the_help_names_is_in_the_recipe(command):
    recipe, _ = cli.COMMANDS[command]
    composed = []
    for example in HELP[command].examples:
        cfg = cli._compose(recipe, example.split())
        assert not isinstance(cfg, str), f"{command} {example}: {cfg}"
        composed.append(cfg)
    named = [key.split("=", 1)[0] for key, _ in HELP[command].keys]
    named += [name for _, what in HELP[command].keys for name in re.findall(r"\b([a-z_]+(?:\.[a-z_]+)+)=", what)]
    for name in named:
        assert any(_has(cfg, name) for cfg in composed), f"{command} --help names {name}, which its recipe lacks"


def test_inspect_help_names_its_own_flags():
    flags = {option for action in parser()._actions for option in action.option_strings} | {"PATH"}
    for key, _ in HELP["inspect"].keys:
        assert key.split()[0] in flags, key
    for example in HELP["inspect"].examples:
        parser().parse_args(example.split())


@pytest.mark.parametrize("command", [*cli.COMMANDS, *cli.PLAIN_COMMANDS])
@pytest.mark.parametrize("flag", ["--help", "-h"])
def test_help_starts_with_the_purpose_and_shows_two_examples(command, flag, capsys):
    assert cli.main([command, "device=cpu", flag]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"datafree {command}: {HELP[command].purpose.splitlines()[0]}")
    assert sum(line.startswith(f"  datafree {command}") for line in out.splitlines()) == 2
    assert len(out.splitlines()) < 40  # not hydra's configuration dump
    if command in cli.COMMANDS:
        assert f"datafree {command} --cfg job" in out
