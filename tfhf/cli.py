"""What the four entry points (train, predict, generate, serve) share: flags read one way,
help grouped by kind, old flag names announced, and every usage error in one line.

The convention:
  - `--help` (also `-h`, `--helpshort`, `--helpfull`) prints the entry point's flags grouped
    by kind and exits 0.
  - A usage error (an unknown flag, a bad value, a missing or unreadable flagfile, a
    positional argument) prints one line, `error: <what>`, and exits 2; an unknown flag
    close to a real one says which (`did you mean --model?`).
  - A renamed flag still works for now: it prints one line, `warning: --old is deprecated:
    use --new`, and acts as the new one.
  - A `TfhfError` raised by the program is printed the same way, exit status 2.

Example:
  >>> closest("mdoel", ["model", "text"]), closest("model-dir", ["model", "model_dir"])
  ('model', 'model_dir')
  >>> rewrite(["--model_dir=runs/lm", "--eager"], [renamed("model_dir", "model"),
  ...          inverted("eager", "jit_compile")], warn=print)
  warning: --model_dir is deprecated: use --model
  warning: --eager is deprecated: use --nojit_compile
  ['--model=runs/lm', '--nojit_compile']
"""

from __future__ import annotations

import dataclasses
import difflib
import sys
import textwrap
from collections.abc import Callable, Mapping, Sequence

from absl import app, flags

from tfhf.errors import TfhfError

HELP_ARGUMENTS = ("-h", "-?", "--help", "-help", "--helpshort", "-helpshort", "--helpfull")


@dataclasses.dataclass(frozen=True)
class Deprecated:
    """An old flag name: what to say, and the arguments it stands for.

    Attributes:
      old: The old flag's name.
      use: What to use instead, as the warning shows it (`--model`).
      boolean: Whether the old flag took no value (`--eager`, `--noeager`).
      replace: Maps the old flag's value (a string; "true"/"false" for a boolean) to the
        arguments that replace it.
      first: Put those arguments before all others, so that flags given explicitly win
        wherever they stand (for an old flag that stood for several new ones).
    """

    old: str
    use: str
    boolean: bool
    replace: Callable[[str], list[str]]
    first: bool = False


def renamed(old: str, new: str, *, boolean: bool = False) -> Deprecated:
    """`--old` is now `--new`, with the same values."""
    if boolean:
        return Deprecated(
            old, f"--{new}", True, lambda v: [f"--{'' if v == 'true' else 'no'}{new}"]
        )
    return Deprecated(old, f"--{new}", False, lambda v: [f"--{new}={v}"])


def inverted(old: str, new: str) -> Deprecated:
    """The boolean `--old` is now the opposite boolean `--new` (`--eager` is `--nojit_compile`)."""
    return Deprecated(old, f"--no{new}", True, lambda v: [f"--{'no' if v == 'true' else ''}{new}"])


def _split(argument: str) -> tuple[str, str | None]:
    """(name, value) of `--name=value` or `-name`; value None when no `=` is given."""
    name, sep, value = argument.lstrip("-").partition("=")
    return name, (value if sep else None)


def rewrite(
    argv: Sequence[str], deprecated: Sequence[Deprecated], *, warn: Callable[[str], None]
) -> list[str]:
    """`argv` (flags only, no program name) with every deprecated flag replaced by what it
    stands for, warning once for each."""
    by_name = {d.old: d for d in deprecated}
    out: list[str] = []
    before: list[str] = []
    warned: set[str] = set()
    args = list(argv)
    i = 0
    while i < len(args):
        argument = args[i]
        i += 1
        if argument == "--":
            out += args[i - 1 :]
            break
        if not argument.startswith("-"):
            out.append(argument)
            continue
        name, value = _split(argument)
        found = by_name.get(name)
        if found is None and name.startswith("no") and name[2:] in by_name:
            found = by_name[name[2:]]
            if found.boolean and value is None:
                value = "false"
            else:
                found = None
        if found is None:
            out.append(argument)
            continue
        if found.boolean:
            value = "true" if value is None else value.lower()
        elif value is None:
            if i >= len(args):
                raise TfhfError(f"flag --{name} needs a value")
            value = args[i]
            i += 1
        if found.old not in warned:
            warned.add(found.old)
            warn(f"warning: --{found.old} is deprecated: use {found.use}")
        if found.first:
            before += found.replace(value)
        else:
            out += found.replace(value)
    return before + out


def closest(name: str, names: Sequence[str]) -> str | None:
    """The flag in `names` that `name` most likely meant (a dash for an underscore, a typo,
    a `no` prefix), or None."""
    spelled = name.replace("-", "_")
    for candidate in (spelled, spelled[2:] if spelled.startswith("no") else None):
        if candidate in names:
            return candidate
    matches = difflib.get_close_matches(spelled, list(names), n=1, cutoff=0.6)
    return matches[0] if matches else None


@dataclasses.dataclass(frozen=True)
class EntryPoint:
    """One `python -m tfhf.<name>` program: its doc, its flags by group, its old names.

    Attributes:
      program: `tfhf.predict`, say.
      doc: The module docstring; `--help` prints it above the flags.
      groups: (group, flag names) in the order `--help` lists them; a callable for an
        entry point whose flags depend on the arguments (train's, on `--task`).
      deprecated: Old flag names still taken, with a warning.
      define: Called with the arguments (flagfiles read, old names replaced) before they are
        parsed, for an entry point that defines its flags from them.
      unknown: The message for a flag it does not have, given the flag's name.
      hints: Flags of the other entry points this one names otherwise (serve's
        `--model_base_path` for `--model`), for the "did you mean".
    """

    program: str
    doc: str
    groups: Sequence[tuple[str, Sequence[str]]] | Callable[[], Sequence[tuple[str, Sequence[str]]]]
    deprecated: Sequence[Deprecated] = ()
    define: Callable[[list[str]], None] | None = None
    unknown: Callable[[str], str] | None = None
    hints: Mapping[str, str] = dataclasses.field(default_factory=dict)

    def flag_groups(self) -> list[tuple[str, list[str]]]:
        groups = self.groups() if callable(self.groups) else self.groups
        return [(group, list(names)) for group, names in groups]

    def flag_names(self) -> list[str]:
        return [name for _, names in self.flag_groups() for name in names]

    def parse(self, argv: Sequence[str], flag_values: flags.FlagValues = flags.FLAGS) -> list[str]:
        """Parses `argv` (program name first) into `flag_values`; returns the arguments left.

        Prints help and exits 0 for a help flag; raises `TfhfError` for a usage error.
        """
        try:
            args = flag_values.read_flags_from_files(list(argv[1:]), force_gnu=False)
        except flags.Error as e:
            raise TfhfError(str(e).removeprefix("ERROR:: ")) from None
        args = rewrite(args, self.deprecated, warn=lambda line: print(line, file=sys.stderr))
        if self.define is not None:
            self.define(args)
        flag_args = args[: args.index("--")] if "--" in args else args
        if any(a in HELP_ARGUMENTS or a.startswith("--help=") for a in flag_args):
            print(self.help(flag_values))
            sys.exit(0)
        try:
            return flag_values([argv[0], *args])
        except flags.UnrecognizedFlagError as e:
            raise TfhfError(self._unknown(e.flagname)) from None
        except flags.Error as e:
            raise TfhfError(str(e)) from None

    def _unknown(self, name: str) -> str:
        message = self.unknown(name) if self.unknown else f"unknown flag --{name}"
        old = {d.old: d.use for d in self.deprecated}
        old.update({hint: f"--{flag}" for hint, flag in self.hints.items()})
        guess = closest(name, [*self.flag_names(), *old])
        if guess is not None:
            return f"{message} (did you mean {old.get(guess, '--' + guess)}?)"
        return f"{message} (python -m {self.program} --helpshort lists the flags)"

    def help(self, flag_values: flags.FlagValues = flags.FLAGS) -> str:
        """The flags of this entry point, grouped, with type, default and help."""
        lines = [f"usage: python -m {self.program} [--flag=value ...]", "", self.doc.strip(), ""]
        for group, names in self.flag_groups():
            lines.append(f"{group}:")
            for name in names:
                lines += describe(flag_values[name])
            lines.append("")
        lines.append(
            "Flags may also come from --flagfile=FILE (one flag per line); the last one given wins."
        )
        return "\n".join(lines)

    def run(self, main: Callable[[list[str]], None]) -> None:
        """Runs `main` under absl with this convention."""

        def parse(argv: list[str]) -> list[str]:
            try:
                return self.parse(argv)
            except TfhfError as e:
                fail(str(e))

        def checked_main(argv: list[str]) -> None:
            if len(argv) > 1:
                fail(f"unexpected arguments: {' '.join(argv[1:])} (flags are --name=value)")
            try:
                main(argv)
            except TfhfError as e:
                fail(str(e))

        app.run(checked_main, flags_parser=parse)


def fail(message: str) -> None:
    """Prints `error: <message>` to stderr and exits with status 2."""
    print(f"error: {message}", file=sys.stderr)
    sys.exit(2)


def kind_of(flag: flags.Flag) -> str:
    """The flag's type in words: string, integer, float, boolean, one of ..., repeatable."""
    if isinstance(flag, flags.MultiFlag):
        return "string, repeatable"
    if isinstance(flag, flags.EnumFlag):
        return "one of " + "|".join(flag.parser.enum_values)
    return {"bool": "boolean", "int": "integer", "float": "float"}.get(flag.flag_type(), "string")


def default_of(flag: flags.Flag) -> str:
    """The flag's default as a command line would give it."""
    if isinstance(flag, flags.MultiFlag):
        return "none" if not flag.default else ",".join(map(str, flag.default))
    if isinstance(flag, flags.BooleanFlag):
        return "true" if flag.default else "false"
    if flag.default is None:
        return "unset"
    return "''" if flag.default == "" else str(flag.default)


def help_of(flag: flags.Flag) -> str:
    """The flag's help text, without the `<a|b>: ` absl puts before an enum's."""
    if isinstance(flag, flags.EnumFlag):
        return flag.help.removeprefix(f"<{'|'.join(flag.parser.enum_values)}>: ")
    if isinstance(flag, flags.MultiFlag):
        return flag.help.partition(";\n")[0]
    return flag.help


def describe(flag: flags.Flag) -> list[str]:
    """The help lines of one flag."""
    name = f"--[no]{flag.name}" if isinstance(flag, flags.BooleanFlag) else f"--{flag.name}"
    head = f"  {name}  ({kind_of(flag)}; default: {default_of(flag)})"
    body = textwrap.wrap(help_of(flag), width=92, initial_indent=" " * 6, subsequent_indent=" " * 6)
    return [head, *body]


def own_flags(module_name: str, flag_values: flags.FlagValues = flags.FLAGS) -> list[str]:
    """The names of the flags `module_name` defined."""
    return [f.name for f in flag_values.get_flags_for_module(module_name)]
