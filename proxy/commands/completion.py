"""``completion``: shell completion scripts for bash, zsh and fish, made from the parser."""

from __future__ import annotations

import argparse


def _commands(parser: argparse.ArgumentParser) -> dict[str, list[str]]:
    """Each command's name and its options (long ones, as typed)."""
    found: dict[str, list[str]] = {}
    for action in parser._actions:  # argparse keeps its sub-parsers here, and nowhere public
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                found[name] = sorted(
                    flag
                    for option in sub._actions
                    for flag in option.option_strings
                    if flag.startswith("--")
                )
    return found


def _bash(commands: dict[str, list[str]]) -> str:
    cases = "\n".join(
        f'        {name}) opts="{" ".join(flags)}" ;;' for name, flags in commands.items()
    )
    return f"""# remoteit-proxy completion for bash: source <(remoteit-proxy completion bash)
_remoteit_proxy() {{
    local cur=${{COMP_WORDS[COMP_CWORD]}} command="" opts="" i
    for ((i = 1; i < COMP_CWORD; i++)); do
        case ${{COMP_WORDS[i]}} in
            -*) ;;
            *) command=${{COMP_WORDS[i]}}; break ;;
        esac
    done
    if [[ -z $command ]]; then
        if [[ $cur == -* ]]; then
            COMPREPLY=($(compgen -W "--help --version" -- "$cur"))
        else
            COMPREPLY=($(compgen -W "{" ".join(commands)}" -- "$cur"))
        fi
        return
    fi
    case $command in
{cases}
    esac
    COMPREPLY=($(compgen -W "$opts" -- "$cur"))
}}
complete -o default -F _remoteit_proxy remoteit-proxy
"""


def _zsh(commands: dict[str, list[str]]) -> str:
    # zsh runs the bash function through its bashcompinit layer: one script to keep right.
    return (
        "# remoteit-proxy completion for zsh: source <(remoteit-proxy completion zsh)\n"
        "autoload -U +X compinit && compinit\n"
        "autoload -U +X bashcompinit && bashcompinit\n" + _bash(commands).split("\n", 1)[1]
    )


def _fish(commands: dict[str, list[str]]) -> str:
    lines = [
        "# remoteit-proxy completion for fish: remoteit-proxy completion fish | source",
        "complete -c remoteit-proxy -f",
        f"complete -c remoteit-proxy -n __fish_use_subcommand -a '{' '.join(commands)}'",
    ]
    for name, flags in commands.items():
        for flag in flags:
            lines.append(
                f"complete -c remoteit-proxy -n '__fish_seen_subcommand_from {name}' -l {flag[2:]}"
            )
    return "\n".join(lines) + "\n"


def completion_script(parser: argparse.ArgumentParser, shell: str) -> str:
    """The script for ``shell`` (bash, zsh or fish)."""
    commands = _commands(parser)
    return {"bash": _bash, "zsh": _zsh, "fish": _fish}[shell](commands)
