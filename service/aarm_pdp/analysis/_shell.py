"""Shell commands read by bashlex (a port of GNU bash's own parser) and judged by what they do.

Every simple command is found, wherever it sits: in lists (``;``, ``&&``, ``||``),
pipelines, subshells and brace groups, loops and functions, command and process
substitutions, and - recursively, up to the depth limit - in the scripts of
``sh -c``/``bash -c``/``su -c``/``watch``/``ssh host CMD``, in ``eval``'s arguments, in
payloads decoded by ``base64 -d`` from a literal, in here-documents and here-strings fed
to a shell, in ``find -exec`` and ``xargs``, and in ``python -c`` code (read with
Python's own :mod:`ast`: ``os.system``, ``subprocess`` with a constant command,
``shutil.rmtree``, ``os.remove``). ``psql``/``mysql`` ``-c``/``-e`` SQL goes to the SQL
analyser.

Words are read as bash reads them: bashlex removes quotes and backslashes; ``${IFS}``
splits (``rm${IFS}-rf${IFS}/*`` is ``rm -rf /*``); variables assigned earlier in the
same command line are substituted (``r=rm; $r -rf /``); ``$HOME`` and ``~`` are the home
directory; ``$(printf etc)``/``$(echo ...)`` of literals are evaluated. Anything else
that expands (other variables, substitutions) marks the word ``dynamic``. Globs are
kept and read by the directory they expand in. ``cd`` and the ``cwd`` parameter move
the working directory that relative paths are resolved against.

Destructive forms are recognised by their meaning, not their spelling: a recursive
delete (``rm -r``, ``find -delete``, ``find -exec rm``, ``shutil.rmtree``) of a protected
path (the root, a top-level system tree, a home); writes to block devices (``dd of=``,
redirections, ``cp``, ``tee``, ``shred``); formatting (``mkfs*``, ``wipefs``, ...);
recursive permission or ownership changes of protected paths and ``chmod 000`` of
them; writes into system trees; a download piped or substituted into a shell; an
encoded payload decoded into a shell.

What the parser cannot read, or what is too deep or too large, is ``dynamic`` and
``destructive_possible`` (the most dangerous reading): an unparseable script,
interpreter code in languages without a parser here (``perl -e``, ``ruby -e``,
``node -e``, ...), an undecodable payload piped to a shell.
"""

from __future__ import annotations

import ast
import base64
import binascii
import re
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import bashlex  # type: ignore[import-untyped]

from aarm_pdp.analysis._limits import Limits
from aarm_pdp.analysis._path import path_facts
from aarm_pdp.analysis._url import analyse_url

SqlAnalyser = Callable[[str, int], dict[str, Any]]

SHELLS = frozenset({"sh", "bash", "dash", "zsh", "ksh", "ash", "mksh", "fish", "csh", "tcsh"})
PYTHONS = re.compile(r"^(python|pypy)[0-9.]*$")
OPAQUE_INTERPRETERS = {
    "perl": ("-e", "-E"),
    "ruby": ("-e",),
    "node": ("-e", "--eval", "-p", "--print"),
    "nodejs": ("-e", "--eval", "-p", "--print"),
    "deno": ("eval",),
    "php": ("-r",),
    "lua": ("-e",),
    "Rscript": ("-e",),
    "osascript": ("-e",),
    "awk": (),
    "gawk": (),
    "mawk": (),
}
DOWNLOADERS = frozenset(
    {"curl", "wget", "fetch", "aria2c", "http", "https", "lwp-download", "lynx", "nc", "ncat"}
)
DECODERS = frozenset({"base64", "base32", "basenc", "xxd", "uudecode", "openssl"})
SQL_CLIENTS = {"psql": ("-c", "--command"), "mysql": ("-e", "--execute"), "sqlite3": ()}
FORMATTERS = re.compile(
    r"^(mkfs(\..+)?|mke2fs|mkswap|mkdosfs|mkntfs|wipefs|sfdisk|sgdisk|fdisk|parted|blkdiscard)$"
)
BLOCK_DEVICE = re.compile(r"^/dev/(sd|hd|vd|xvd|nvme|mmcblk|disk|dm-|md|loop|nbd|rbd|mapper/)")
HARMLESS_DEVICES = frozenset(
    {
        "/dev/null",
        "/dev/stdout",
        "/dev/stderr",
        "/dev/tty",
        "/dev/zero",
        "/dev/random",
        "/dev/urandom",
    }
)
WRAPPERS = frozenset(
    {
        "sudo",
        "doas",
        "env",
        "nice",
        "nohup",
        "timeout",
        "time",
        "command",
        "builtin",
        "exec",
        "stdbuf",
        "ionice",
        "setsid",
        "chrt",
        "taskset",
        "unbuffer",
        "caffeinate",
        "busybox",
        "runuser",
        "flock",
        "then",
        "do",
    }
)
# Options of wrappers that take a value (the value is skipped with the option).
_WRAPPER_VALUE_OPTIONS = {
    "sudo": {"-u", "-g", "-C", "-D", "-h", "-p", "-r", "-t", "-U", "-R", "-T"},
    "doas": {"-u", "-C"},
    "env": {"-u", "-C", "-S", "--unset", "--chdir", "--split-string"},
    "nice": {"-n", "--adjustment"},
    "timeout": {"-s", "-k", "--signal", "--kill-after"},
    "stdbuf": {"-i", "-o", "-e"},
    "ionice": {"-c", "-n", "-p", "-P", "-u"},
    "chrt": {"-p"},
    "taskset": {"-p", "-c"},
    "runuser": {"-u", "-g", "-G", "-l", "-c"},
    "exec": {"-a"},
    "flock": {"-w", "-E", "-c"},
}
_IFS = re.compile(r"\$\{IFS[^}]*\}|\$IFS(?![A-Za-z0-9_])")
_PARAM = re.compile(r"\$\{?([A-Za-z_][A-Za-z0-9_]*)")
_IFS_MARK = "\x00"
_MAX_ARG = 512
_STDIN_FLAGS = frozenset({"-s", "-", "-i"})


@dataclass
class _Word:
    text: str
    parts: list[str]
    dynamic: bool = False
    download: bool = False
    substituted: list[str] = field(default_factory=list)


@dataclass
class _State:
    cwd: str | None
    source: str = ""
    env: dict[str, str] = field(default_factory=dict)


@dataclass
class _Stage:
    """What one command of a pipeline does with its standard input and output."""

    program: str = ""
    literal_output: str | None = None
    downloader: bool = False
    decoder: bool = False
    stdin_shell: bool = False
    stdin_interpreter: bool = False
    xargs: list[str] | None = None
    here_input: str | None = None
    passthrough: bool = False


class _Analysis:
    """All facts of one shell value, gathered while walking."""

    def __init__(self, limits: Limits, sql: SqlAnalyser | None) -> None:
        self.limits = limits
        self.sql = sql
        self.commands: list[dict[str, Any]] = []
        self.deletes: list[dict[str, Any]] = []
        self.writes: list[dict[str, Any]] = []
        self.urls: list[dict[str, Any]] = []
        self.sql_facts: list[dict[str, Any]] = []
        self.nested_unparsed: list[dict[str, Any]] = []
        self.flags: dict[str, bool] = dict.fromkeys(
            (
                "recursive_delete",
                "root_wipe",
                "system_delete",
                "find_delete",
                "dynamic_delete",
                "device_write",
                "format_device",
                "permission_wipe",
                "system_write",
                "download",
                "download_to_shell",
                "encoded_payload",
                "opaque_code",
                "interpreter_code",
                "remote_command",
                "depth_exceeded",
                "truncated",
                "dynamic",
                "unicode_whitespace",
            ),
            False,
        )
        self.decoded_payloads = 0
        self.max_depth = 0

    # --- scripts ---------------------------------------------------------------------------

    def script(self, text: str, depth: int, via: str, cwd: str | None) -> bool:
        """Parse and walk one script; False (and a record) when it does not parse."""
        if depth > self.limits.max_shell_depth:
            self.flags["depth_exceeded"] = True
            self.flags["dynamic"] = True
            return False
        if len(text) > self.limits.max_shell_chars:
            self.nested_unparsed.append({"via": via, "depth": depth, "reason": "too_long"})
            self.flags["dynamic"] = True
            return False
        self.max_depth = max(self.max_depth, depth)
        try:
            trees = bashlex.parse(text)
        except Exception as exc:  # bashlex raises ParsingError, NotImplementedError, ...
            self.nested_unparsed.append(
                {"via": via, "depth": depth, "reason": "syntax_error", "error": str(exc)[:200]}
            )
            self.flags["dynamic"] = True
            return False
        state = _State(cwd=cwd, source=text)
        for tree in trees:
            self.node(tree, state, depth, via)
        return True

    def node(self, node: Any, state: _State, depth: int, via: str) -> _Stage | None:
        kind = node.kind
        if kind == "command":
            # A command on its own: its stdin is unknown (xargs, a bare shell, ...).
            stage = self.command_node(node, state, depth, via)
            self.connect([stage], state, depth)
            return stage
        if kind == "pipeline":
            self.pipeline(node, state, depth, via)
        elif kind == "list":
            for part in node.parts:
                if part.kind != "operator":
                    self.node(part, state, depth, via)
        elif kind == "compound":
            for part in node.list:
                if part.kind not in ("reservedword", "operator", "pipe"):
                    self.node(part, state, depth, via)
            for redirect in getattr(node, "redirects", []) or []:
                self.redirect(redirect, state, depth, via, _Stage())
        elif kind in ("if", "for", "while", "until", "function"):
            for part in node.parts:
                if part.kind in (
                    "list",
                    "command",
                    "pipeline",
                    "compound",
                    "if",
                    "for",
                    "while",
                    "until",
                ):
                    self.node(part, state, depth, via)
                elif part.kind == "word" and kind == "for":
                    self.word(part, state, depth)
            if kind == "function":
                self.node(node.body, state, depth, via)
        return None

    def pipeline(self, node: Any, state: _State, depth: int, via: str) -> None:
        stages: list[_Stage] = []
        for part in node.parts:
            if part.kind == "pipe":
                continue
            before = len(stages)
            stage = self.command_node(part, state, depth, via) if part.kind == "command" else None
            if stage is None:
                if part.kind != "command":
                    self.node(part, state, depth, via)
                stage = _Stage()
            if len(stages) == before:
                stages.append(stage)
        self.connect(stages, state, depth)

    def connect(self, stages: list[_Stage], state: _State, depth: int) -> None:
        """What flows between the commands of a pipeline."""
        payload: str | None = None  # literal text flowing on stdin, when known
        downloaded = False
        encoded = False
        for stage in stages:
            if stage.here_input is not None:
                payload, downloaded, encoded = stage.here_input, False, False
            if stage.xargs is not None:
                extra = payload.split() if payload is not None else ["$STDIN"]
                self.simple(stage.xargs + extra, [], state, depth, "xargs", dynamic=payload is None)
            if stage.stdin_shell or stage.stdin_interpreter:
                self.consume(stage, payload, downloaded, encoded, state, depth)
            if stage.decoder:
                encoded = True
                payload = _decode(payload)
                if payload is not None:
                    self.decoded_payloads += 1
            elif stage.literal_output is not None:
                payload, downloaded, encoded = stage.literal_output, False, False
            elif stage.downloader:
                payload, downloaded = None, True
            elif stage.passthrough:
                continue
            elif stage.stdin_shell or stage.stdin_interpreter:
                payload, downloaded, encoded = None, False, False
            else:
                # A filter we do not model: its output is unknown but keeps the taint.
                payload = None

    def consume(
        self,
        stage: _Stage,
        payload: str | None,
        downloaded: bool,
        encoded: bool,
        state: _State,
        depth: int,
    ) -> None:
        """A shell or interpreter reading its program from the pipe."""
        if downloaded:
            self.flags["download_to_shell"] = True
        if encoded:
            self.flags["encoded_payload"] = True
        if payload is None:
            if not downloaded:
                self.flags["dynamic"] = True
            if encoded:
                self.opaque()
        elif stage.stdin_shell:
            self.script(payload, depth + 1, "stdin", state.cwd)
        elif PYTHONS.match(stage.program):
            self.python(payload, depth + 1, state)
        else:
            self.opaque()

    # --- simple commands -------------------------------------------------------------------

    def command_node(self, node: Any, state: _State, depth: int, via: str) -> _Stage:
        words: list[_Word] = []
        assignments: list[tuple[str, _Word]] = []
        redirects: list[Any] = []
        for part in node.parts:
            if part.kind == "word":
                words.append(self.word(part, state, depth))
            elif part.kind == "assignment":
                name, _, _ = part.word.partition("=")
                value = self.word(part, state, depth, assignment=True)
                value.text = value.text.partition("=")[2]
                assignments.append((name, value))
            elif part.kind == "redirect":
                redirects.append(part)
        if not words:
            for name, value in assignments:
                if value.dynamic:
                    state.env.pop(name, None)
                else:
                    state.env[name] = value.text
            stage = _Stage()
            for redirect in redirects:
                self.redirect(redirect, state, depth, via, stage)
            return stage
        argv: list[str] = []
        origins: list[_Word] = []
        dynamic = False
        for word in words:
            argv.extend(word.parts)
            origins.extend([word] * len(word.parts))
            dynamic = dynamic or word.dynamic
        stage = self.simple(argv, origins, state, depth, via, dynamic=dynamic)
        for redirect in redirects:
            self.redirect(redirect, state, depth, via, stage)
        return stage

    def redirect(self, node: Any, state: _State, depth: int, via: str, stage: _Stage) -> None:
        kind = node.type
        target = node.output
        if kind in ("<<", "<<-") and getattr(node, "heredoc", None) is not None:
            body = node.heredoc.value
            delimiter = target.word if hasattr(target, "word") else ""
            lines = body.split("\n")
            if lines and lines[-1].strip() == delimiter:
                lines = lines[:-1]
            stage.here_input = "\n".join(lines)
            self.here(stage, state, depth)
            return
        if not hasattr(target, "kind") or target.kind != "word":
            return
        word = self.word(target, state, depth)
        if kind == "<<<":
            stage.here_input = word.text + "\n"
            self.here(stage, state, depth)
            return
        if kind in (">", ">>", ">|", "&>", "&>>", "<>"):
            self.write_target(word.text, state, "redirect", dynamic=word.dynamic)

    def here(self, stage: _Stage, state: _State, depth: int) -> None:
        """A here-document or here-string feeding a shell, decoder or interpreter."""
        if stage.decoder and stage.here_input is not None:
            decoded = _decode(stage.here_input)
            self.flags["encoded_payload"] = True
            stage.literal_output, stage.decoder = decoded, False
            if decoded is not None:
                self.decoded_payloads += 1
            stage.here_input = None
        elif stage.stdin_shell and stage.here_input is not None:
            self.script(stage.here_input, depth + 1, "heredoc", state.cwd)
            stage.stdin_shell = False
            stage.here_input = None
        elif stage.stdin_interpreter and stage.here_input is not None:
            if PYTHONS.match(stage.program):
                self.python(stage.here_input, depth + 1, state)
            else:
                self.opaque()
            stage.stdin_interpreter = False
            stage.here_input = None

    def record(
        self,
        program: str,
        argv: list[str],
        wrappers: list[str],
        state: _State,
        depth: int,
        via: str,
        dynamic: bool,
    ) -> None:
        if len(self.commands) >= self.limits.max_shell_commands:
            self.flags["truncated"] = True
            return
        self.commands.append(
            {
                "program": program,
                "argv": [a[:_MAX_ARG] for a in argv[:64]],
                "wrappers": wrappers,
                "depth": depth,
                "via": via,
                "dynamic": dynamic,
                "cwd": state.cwd,
            }
        )
        if dynamic:
            self.flags["dynamic"] = True

    def simple(
        self,
        argv: list[str],
        origins: list[_Word],
        state: _State,
        depth: int,
        via: str,
        *,
        dynamic: bool,
    ) -> _Stage:
        """Unwrap wrappers, record the command and work out what it does."""
        wrappers: list[str] = []
        args = list(argv)
        while args and _program(args[0]) in WRAPPERS:
            wrapper = _program(args[0])
            wrappers.append(wrapper)
            args = _skip_wrapper(wrapper, args[1:])
            if wrapper == "command" and args[:1] and args[0] in ("-v", "-V"):
                args = []  # command -v only looks the name up
        if not args:
            return _Stage()
        program = _program(args[0])
        operands = args[1:]
        self.record(program, args, wrappers, state, depth, via, dynamic)
        stage = _Stage(program=program)
        offset = len(argv) - len(args)
        script_words = {
            i: origins[offset + i] for i in range(len(args)) if offset + i < len(origins)
        }
        if program in SHELLS:
            self.shell_program(operands, script_words, state, depth, stage)
        elif program in ("eval", "source", "."):
            self.eval(program, operands, script_words, state, depth, stage)
        elif PYTHONS.match(program):
            self.python_program(operands, state, depth, stage)
        elif program in OPAQUE_INTERPRETERS:
            self.interpreter(program, operands, stage)
        elif program in ("su", "watch", "ssh"):
            self.remote(program, operands, state, depth)
        elif program in SQL_CLIENTS:
            self.sql_client(program, operands, depth)
        elif program in ("echo", "printf"):
            stage.literal_output = None if dynamic else _echo(program, operands)
        elif program in ("cat", "tee") and not _operands(operands):
            stage.passthrough = True
        elif program == "cd" or program == "pushd":
            target = operands[-1] if operands and not operands[-1].startswith("-") else "~"
            state.cwd = (
                None if dynamic or target == "-" else path_facts(target, state.cwd)["normalized"]
            )
        elif program == "xargs":
            stage.xargs = _xargs_command(operands)
        elif program in DOWNLOADERS:
            self.downloader(program, operands, stage)
        elif program in DECODERS:
            stage.decoder = _is_decoder(program, operands)
            if not stage.decoder:
                stage.literal_output = None
        else:
            self.effects(program, operands, state, depth, via, dynamic)
        return stage

    # --- programs that run other code ------------------------------------------------------

    def shell_program(
        self,
        operands: list[str],
        script_words: dict[int, _Word],
        state: _State,
        depth: int,
        stage: _Stage,
    ) -> None:
        index = _c_option(operands)
        if index is not None:
            script = operands[index]
            word = script_words.get(index + 1)
            if word is not None and word.download:
                self.flags["download_to_shell"] = True
            self.script(script, depth + 1, "sh -c", state.cwd)
            return
        files = [o for o in operands if not o.startswith("-") and o != "--"]
        substituted = [w for i, w in script_words.items() if i > 0 and w.download]
        if substituted:
            self.flags["download_to_shell"] = True
        if not files or any(o in _STDIN_FLAGS for o in operands):
            stage.stdin_shell = True
        elif any(w.dynamic for i, w in script_words.items() if i > 0) and not substituted:
            self.flags["dynamic"] = True

    def eval(
        self,
        program: str,
        operands: list[str],
        script_words: dict[int, _Word],
        state: _State,
        depth: int,
        stage: _Stage,
    ) -> None:
        if any(w.download for i, w in script_words.items() if i > 0):
            self.flags["download_to_shell"] = True
        if program == "eval":
            self.script(" ".join(operands), depth + 1, "eval", state.cwd)
        elif any(w.dynamic for i, w in script_words.items() if i > 0):
            self.flags["dynamic"] = True

    def python_program(self, operands: list[str], state: _State, depth: int, stage: _Stage) -> None:
        self.flags["interpreter_code"] = True
        if "-c" in operands and operands.index("-c") + 1 < len(operands):
            self.python(operands[operands.index("-c") + 1], depth + 1, state)
        elif "-m" in operands:
            return
        elif not [o for o in operands if not o.startswith("-")] or "-" in operands:
            stage.stdin_interpreter = True

    def interpreter(self, program: str, operands: list[str], stage: _Stage) -> None:
        inline = OPAQUE_INTERPRETERS[program]
        if program in ("awk", "gawk", "mawk"):
            if any("system" in o or "|" in o for o in operands):
                self.opaque()
            return
        if any(o in inline for o in operands):
            self.opaque()
        elif not [o for o in operands if not o.startswith("-")]:
            stage.stdin_interpreter = True

    def opaque(self) -> None:
        self.flags["opaque_code"] = True
        self.flags["dynamic"] = True

    def remote(self, program: str, operands: list[str], state: _State, depth: int) -> None:
        if program == "su":
            if "-c" in operands and operands.index("-c") + 1 < len(operands):
                self.script(operands[operands.index("-c") + 1], depth + 1, "su -c", state.cwd)
            return
        if program == "watch":
            rest = _skip_options(operands, {"-n", "-d", "--interval", "-c", "-g"})
            if rest:
                self.script(" ".join(rest), depth + 1, "watch", state.cwd)
            return
        rest = _skip_options(
            operands,
            {
                "-p",
                "-i",
                "-l",
                "-o",
                "-F",
                "-J",
                "-L",
                "-R",
                "-D",
                "-W",
                "-b",
                "-c",
                "-E",
                "-e",
                "-m",
                "-O",
                "-Q",
                "-S",
                "-w",
            },
        )
        if len(rest) > 1:
            self.flags["remote_command"] = True
            self.script(" ".join(rest[1:]), depth + 1, "ssh", None)

    def sql_client(self, program: str, operands: list[str], depth: int) -> None:
        options = SQL_CLIENTS[program]
        texts: list[str] = []
        for i, operand in enumerate(operands):
            if operand in options and i + 1 < len(operands):
                texts.append(operands[i + 1])
            for option in options:
                if option.startswith("--") and operand.startswith(option + "="):
                    texts.append(operand.split("=", 1)[1])
        if program == "sqlite3":
            positional = [o for o in operands if not o.startswith("-")]
            texts += positional[1:]
        for text in texts:
            if self.sql is not None:
                facts = self.sql(text, depth + 1)
                facts["client"] = program
                self.sql_facts.append(facts)

    def downloader(self, program: str, operands: list[str], stage: _Stage) -> None:
        self.flags["download"] = True
        for operand in operands:
            if "://" in operand:
                self.urls.append(analyse_url(operand, max_chars=self.limits.max_url_chars))
        if program == "curl":
            stage.downloader = not any(
                o in ("-o", "-O", "--output", "--remote-name", "--remote-name-all")
                or o.startswith("--output=")
                for o in operands
            )
        elif program == "wget":
            stage.downloader = any(
                o == "--output-document=-"
                or (o.startswith("-") and not o.startswith("--") and o.endswith("O-"))
                or (o.startswith("-") and not o.startswith("--") and o.endswith("O") and nxt == "-")
                for o, nxt in zip(operands, [*operands[1:], ""], strict=True)
            )
        else:
            stage.downloader = True

    def python(self, code: str, depth: int, state: _State) -> None:
        """Read ``python -c`` code with :mod:`ast` for shell-outs and deletions."""
        self.flags["interpreter_code"] = True
        if depth > self.limits.max_shell_depth:
            self.flags["depth_exceeded"] = True
            return
        try:
            tree = ast.parse(code)
        except (SyntaxError, ValueError):
            self.nested_unparsed.append(
                {"via": "python -c", "depth": depth, "reason": "syntax_error"}
            )
            self.opaque()
            return
        aliases = _python_aliases(tree)
        for node in ast.walk(tree):
            if isinstance(node, ast.Call):
                self.python_call(node, aliases, depth, state)

    def python_call(
        self, node: ast.Call, aliases: dict[str, str], depth: int, state: _State
    ) -> None:
        name = _dotted(node.func, aliases)
        first = node.args[0] if node.args else None
        constant = (
            first.value
            if isinstance(first, ast.Constant) and isinstance(first.value, str)
            else None
        )
        if name in (
            "os.system",
            "os.popen",
            "subprocess.getoutput",
            "subprocess.getstatusoutput",
            "commands.getoutput",
            "pty.spawn",
        ):
            if constant is None:
                self.opaque()
            else:
                self.script(constant, depth, "python -c", state.cwd)
        elif (
            name.startswith("subprocess.")
            or name.startswith("os.exec")
            or name.startswith("os.spawn")
        ):
            if isinstance(first, ast.List | ast.Tuple) and all(
                isinstance(e, ast.Constant) and isinstance(e.value, str) for e in first.elts
            ):
                argv = [str(e.value) for e in first.elts if isinstance(e, ast.Constant)]
                self.simple(argv, [], state, depth, "python -c", dynamic=False)
            elif constant is not None:
                self.script(constant, depth, "python -c", state.cwd)
            else:
                self.opaque()
        elif name in ("shutil.rmtree", "os.removedirs"):
            self.delete(
                "shutil.rmtree",
                [constant] if constant is not None else ["$PY"],
                True,
                state,
                constant is None,
            )
        elif name in ("os.remove", "os.unlink", "os.rmdir", "pathlib.Path.unlink"):
            self.delete(
                name,
                [constant] if constant is not None else ["$PY"],
                False,
                state,
                constant is None,
            )
        elif (
            name in ("exec", "eval", "compile", "__import__", "importlib.import_module")
            and constant is None
        ):
            self.opaque()
        elif name in ("open", "io.open") and constant is not None and len(node.args) > 1:
            mode = node.args[1]
            if (
                isinstance(mode, ast.Constant)
                and isinstance(mode.value, str)
                and set(mode.value) & set("wax+")
            ):
                self.write_target(constant, state, "python open", dynamic=False)
        elif name in (
            "urllib.request.urlopen",
            "requests.get",
            "requests.post",
            "httpx.get",
            "httpx.post",
        ):
            self.flags["download"] = True
            if constant is not None:
                self.urls.append(analyse_url(constant, max_chars=self.limits.max_url_chars))

    # --- what ordinary programs do ---------------------------------------------------------

    def effects(
        self, program: str, operands: list[str], state: _State, depth: int, via: str, dynamic: bool
    ) -> None:
        if program in ("rm", "rmdir", "unlink", "srm"):
            flags = [o for o in operands if o.startswith("-") and o != "-" and o != "--"]
            recursive = program == "rm" and any(
                o in ("--recursive", "-r", "-R")
                or (not o.startswith("--") and ("r" in o or "R" in o))
                for o in flags
            )
            targets = _operands(operands)
            if "--no-preserve-root" in flags:
                self.flags["root_wipe"] = True
            self.delete(program, targets, recursive, state, dynamic)
        elif program == "find":
            self.find(operands, state, depth, via, dynamic)
        elif program == "shred":
            targets = _operands(operands)
            for target in targets:
                self.write_target(target, state, "shred", dynamic=dynamic)
            if "-u" in operands or "--remove" in operands:
                self.delete("shred", targets, False, state, dynamic)
        elif program == "dd":
            for operand in operands:
                if operand.startswith("of="):
                    self.write_target(operand[3:], state, "dd", dynamic=dynamic)
        elif FORMATTERS.match(program):
            self.flags["format_device"] = True
        elif program in ("chmod", "chown", "chgrp", "setfacl", "chattr"):
            self.permissions(program, operands, state, dynamic)
        elif program in ("cp", "mv", "install", "ln", "rsync"):
            targets = _operands(operands)
            if len(targets) >= 2:
                self.write_target(targets[-1], state, program, dynamic=dynamic)
                if program == "mv" or (program == "rsync" and "--remove-source-files" in operands):
                    self.delete(program, targets[:-1], True, state, dynamic)
            if program == "rsync" and "--delete" in operands and targets:
                self.delete("rsync --delete", targets[-1:], True, state, dynamic)
        elif program in ("tee", "truncate", "touch") or (
            program == "sed" and any(o.startswith("-i") or o == "--in-place" for o in operands)
        ):
            targets = _operands(operands)
            if program == "sed":
                targets = targets[1:]
            if program == "truncate":
                targets = [t for t in targets if not t.lstrip("-").isdigit()]
            for target in targets:
                self.write_target(target, state, program, dynamic=dynamic)

    def find(self, operands: list[str], state: _State, depth: int, via: str, dynamic: bool) -> None:
        starts: list[str] = []
        i = 0
        while i < len(operands) and not operands[i].startswith(("-", "(", "!", ")")):
            starts.append(operands[i])
            i += 1
        starts = starts or ["."]
        expression = operands[i:]
        if "-delete" in expression:
            self.flags["find_delete"] = True
            self.delete("find -delete", starts, True, state, dynamic)
        j = 0
        while j < len(expression):
            if expression[j] in ("-exec", "-execdir", "-ok", "-okdir"):
                end = j + 1
                while end < len(expression) and expression[end] not in (";", "+", "\\;"):
                    end += 1
                inner = expression[j + 1 : end]
                found = [s.rstrip("/") + "/*" if s != "/" else "/*" for s in starts]
                argv: list[str] = []
                for arg in inner:
                    argv.extend(found if arg == "{}" else [arg])
                if inner:
                    self.simple(argv, [], state, depth, "find -exec", dynamic=dynamic)
                j = end
            j += 1

    def permissions(self, program: str, operands: list[str], state: _State, dynamic: bool) -> None:
        recursive = any(
            o in ("-R", "--recursive")
            or (o.startswith("-") and not o.startswith("--") and "R" in o)
            for o in operands
        )
        positional = [o for o in operands if not o.startswith("-") or o.lstrip("-").isdigit()]
        if not positional:
            return
        mode, targets = positional[0], positional[1:]
        wipe_mode = program == "chmod" and (
            mode.strip("0") == "" or mode in ("a-rwx", "ugo-rwx", "a=", "ugo=")
        )
        for target in targets:
            facts = path_facts(target, state.cwd)
            if facts["protected"] and (recursive or wipe_mode):
                self.flags["permission_wipe"] = True
            if facts["system"] and recursive:
                self.flags["system_write"] = True
        if dynamic and recursive:
            self.flags["dynamic_delete"] = True

    def delete(
        self, program: str, targets: list[str], recursive: bool, state: _State, dynamic: bool
    ) -> None:
        facts_list: list[dict[str, Any]] = []
        for target in targets:
            facts = _brief(target, state.cwd)
            facts["dynamic"] = dynamic or target.startswith("$")
            facts_list.append(facts)
            if recursive and facts["protected"]:
                self.flags["root_wipe"] = True
            if facts["system"] and (recursive or not facts["glob"]):
                self.flags["system_delete"] = True
            if recursive and facts["dynamic"]:
                self.flags["dynamic_delete"] = True
        if recursive:
            self.flags["recursive_delete"] = True
        if not targets and dynamic and recursive:
            self.flags["dynamic_delete"] = True
        self.deletes.append({"program": program, "recursive": recursive, "targets": facts_list})

    def write_target(self, target: str, state: _State, how: str, *, dynamic: bool) -> None:
        facts = _brief(target, state.cwd)
        path = facts["normalized"]
        if (
            path in HARMLESS_DEVICES
            or path.startswith("/dev/fd/")
            or path.startswith("/proc/self/fd/")
        ):
            return
        device = bool(BLOCK_DEVICE.match(path))
        facts.update({"how": how, "device": device, "dynamic": dynamic})
        self.writes.append(facts)
        if device:
            self.flags["device_write"] = True
        elif facts["system"]:
            self.flags["system_write"] = True

    # --- words -----------------------------------------------------------------------------

    def word(self, node: Any, state: _State, depth: int, *, assignment: bool = False) -> _Word:
        """A word as bash expands it (see the module docstring), with nested commands walked."""
        text: str = node.word
        dynamic = False
        download = False
        substituted: list[str] = []
        for part in getattr(node, "parts", []) or []:
            if part.kind in ("commandsubstitution", "processsubstitution"):
                via = (
                    "substitution" if part.kind == "commandsubstitution" else "process_substitution"
                )
                inner = part.command
                self.nested_node(inner, state, depth + 1, via)
                output = _literal_output(inner, self.limits)
                if _is_download(inner):
                    download = True
                if _has_decoder(inner):
                    self.flags["encoded_payload"] = True
                source = state.source[part.pos[0] : part.pos[1]] if state.source else None
                if (
                    output is not None
                    and source
                    and source in text
                    and part.kind == "commandsubstitution"
                ):
                    text = text.replace(source, output.rstrip("\n"), 1)
                    substituted.append(output)
                else:
                    dynamic = True
        if _IFS.search(text):
            text = _IFS.sub(_IFS_MARK, text)

        def param(match: re.Match[str]) -> str:
            nonlocal dynamic
            name = match.group(1)
            if name in state.env:
                return state.env[name]
            if name == "HOME":
                return "~"
            if name == "PWD" and state.cwd is not None:
                return state.cwd
            dynamic = True
            return match.group(0)

        if "$" in text:
            text = _expand_braced(text, param)
        if any(_unicode_space(ch) for ch in text):
            # Another parser may split here: read it the way that splits (most dangerous).
            self.flags["unicode_whitespace"] = True
            text = "".join(_IFS_MARK if _unicode_space(ch) else ch for ch in text)
        parts = [p for p in text.split(_IFS_MARK) if p != ""] if _IFS_MARK in text else [text]
        if _IFS_MARK in text:
            text = text.replace(_IFS_MARK, " ")
        return _Word(
            text=text, parts=parts, dynamic=dynamic, download=download, substituted=substituted
        )

    def nested_node(self, node: Any, state: _State, depth: int, via: str) -> None:
        if depth > self.limits.max_shell_depth:
            self.flags["depth_exceeded"] = True
            self.flags["dynamic"] = True
            return
        self.max_depth = max(self.max_depth, depth)
        self.node(node, _State(cwd=state.cwd, source=state.source, env=dict(state.env)), depth, via)

    # --- result ----------------------------------------------------------------------------

    def result(self, parsed: bool) -> dict[str, Any]:
        flags = dict(self.flags)
        sql_destructive = any(f.get("destructive") for f in self.sql_facts)
        destructive = (
            any(
                flags[k]
                for k in (
                    "root_wipe",
                    "device_write",
                    "format_device",
                    "permission_wipe",
                    "system_delete",
                )
            )
            or sql_destructive
        )
        possible = (
            destructive
            or not parsed
            or bool(self.nested_unparsed)
            or any(
                flags[k]
                for k in (
                    "dynamic_delete",
                    "download_to_shell",
                    "opaque_code",
                    "depth_exceeded",
                    "truncated",
                    "encoded_payload",
                    "system_write",
                    "unicode_whitespace",
                )
            )
        )
        return {
            "type": "shell",
            "parsed": parsed,
            "commands": self.commands,
            "programs": sorted({c["program"] for c in self.commands}),
            "effects": {**flags, "decoded_payloads": self.decoded_payloads},
            "deletes": self.deletes,
            "writes": self.writes,
            "urls": self.urls,
            "sql": self.sql_facts,
            "nested_unparsed": self.nested_unparsed,
            "dynamic": flags["dynamic"] or not parsed or bool(self.nested_unparsed),
            "destructive": destructive,
            "destructive_possible": possible,
            "max_depth": self.max_depth,
        }


# --- helpers ---------------------------------------------------------------------------------


def _program(arg: str) -> str:
    return arg.rsplit("/", 1)[-1] if arg else arg


def _skip_options(args: list[str], with_value: set[str]) -> list[str]:
    i = 0
    while i < len(args) and args[i].startswith("-") and args[i] != "-":
        if args[i] == "--":
            return args[i + 1 :]
        i += 2 if args[i] in with_value else 1
    return args[i:]


def _skip_wrapper(wrapper: str, args: list[str]) -> list[str]:
    rest = _skip_options(args, _WRAPPER_VALUE_OPTIONS.get(wrapper, set()))
    if wrapper == "env":
        while rest and "=" in rest[0] and not rest[0].startswith("="):
            rest = rest[1:]
    elif wrapper in ("timeout", "nice", "chrt", "taskset", "flock") and rest and wrapper != "nice":
        rest = rest[1:]  # the duration / priority / cpu list / lock file
    return rest


def _operands(operands: list[str]) -> list[str]:
    if "--" in operands:
        i = operands.index("--")
        return [o for o in operands[:i] if not o.startswith("-")] + operands[i + 1 :]
    return [o for o in operands if not o.startswith("-") or o == "-"]


def _c_option(operands: list[str]) -> int | None:
    """Index of the script operand of ``sh -c SCRIPT`` (also ``-ec``, ``-lc``, ``-c -x``)."""
    for i, operand in enumerate(operands):
        if operand == "--":
            return None
        if operand.startswith("-") and not operand.startswith("--") and "c" in operand[1:]:
            rest = [j for j in range(i + 1, len(operands)) if not operands[j].startswith("-")]
            return rest[0] if rest else None
        if not operand.startswith("-") and not operand.startswith("+"):
            return None
    return None


def _xargs_command(operands: list[str]) -> list[str]:
    rest = _skip_options(
        operands,
        {
            "-I",
            "-n",
            "-P",
            "-L",
            "-d",
            "-E",
            "-s",
            "-a",
            "--max-args",
            "--max-procs",
            "--delimiter",
        },
    )
    return rest or ["echo"]


def _is_decoder(program: str, operands: list[str]) -> bool:
    if program in ("base64", "base32", "basenc"):
        return any(
            o in ("-d", "--decode", "-D")
            or (o.startswith("-") and not o.startswith("--") and "d" in o)
            for o in operands
        )
    if program == "xxd":
        return "-r" in operands
    if program == "uudecode":
        return True
    return "-d" in operands and any("base64" in o or o == "-a" for o in operands)


def _decode(payload: str | None) -> str | None:
    if payload is None:
        return None
    text = "".join(payload.split())
    try:
        raw = base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
    except (binascii.Error, ValueError):
        return None
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return None


def _echo(program: str, operands: list[str]) -> str:
    args = list(operands)
    if program == "echo":
        while args and args[0] in ("-n", "-e", "-E", "-ne", "-en"):
            args = args[1:]
        return " ".join(args) + "\n"
    if not args:
        return ""
    fmt, rest = args[0], args[1:]
    if "%" in fmt:
        try:
            return (
                fmt.replace("%s", "{}").replace("\\n", "\n").format(*rest)
                if fmt.count("%s") == len(rest)
                else fmt
            )
        except (IndexError, ValueError):
            return fmt
    return fmt.replace("\\n", "\n")


def _literal_output(node: Any, limits: Limits) -> str | None:
    """The output of a substitution made only of literal echo/printf (and a base64 decode)."""
    commands = [node] if node.kind == "command" else list(getattr(node, "parts", []))
    output: str | None = None
    for part in commands:
        if part.kind == "pipe":
            continue
        if part.kind != "command":
            return None
        words = [p for p in part.parts if p.kind == "word"]
        if (
            not words
            or any(getattr(w, "parts", None) for w in words)
            or len(words) != len(part.parts)
        ):
            return None
        argv = [w.word for w in words]
        program = _program(argv[0])
        if program in ("echo", "printf"):
            output = _echo(program, argv[1:])
        elif program in DECODERS and _is_decoder(program, argv[1:]) and output is not None:
            output = _decode(output)
        else:
            return None
        if output is not None and len(output) > limits.max_shell_chars:
            return None
    return output


def _unicode_space(ch: str) -> bool:
    return not ch.isascii() and (
        ch.isspace() or unicodedata.category(ch) in ("Zs", "Zl", "Zp", "Cf")
    )


def _has_decoder(node: Any) -> bool:
    commands = [node] if node.kind == "command" else list(getattr(node, "parts", []))
    for part in commands:
        if part.kind == "command":
            words = [p.word for p in part.parts if p.kind == "word"]
            if (
                words
                and _program(words[0]) in DECODERS
                and _is_decoder(_program(words[0]), words[1:])
            ):
                return True
    return False


def _is_download(node: Any) -> bool:
    commands = [node] if node.kind == "command" else list(getattr(node, "parts", []))
    for part in commands:
        if part.kind == "command":
            words = [p.word for p in part.parts if p.kind == "word"]
            while words and _program(words[0]) in WRAPPERS:
                words = words[1:]
            if words and _program(words[0]) in DOWNLOADERS:
                return True
    return False


def _expand_braced(text: str, param: Callable[[re.Match[str]], str]) -> str:
    out = re.sub(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}", param, text)
    return _PARAM.sub(param, out)


def _brief(target: str, cwd: str | None) -> dict[str, Any]:
    facts = path_facts(target, cwd)
    return {
        "raw": target[:_MAX_ARG],
        "normalized": facts["normalized"],
        "glob": facts["glob"],
        "glob_base": facts.get("glob_base"),
        "protected": facts["protected"],
        "system": facts["system"],
        "relative": facts["relative"],
    }


def _python_aliases(tree: ast.AST) -> dict[str, str]:
    aliases: dict[str, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                aliases[alias.asname or alias.name.split(".")[0]] = (
                    alias.name if alias.asname else alias.name.split(".")[0]
                )
        elif isinstance(node, ast.ImportFrom) and node.module:
            for alias in node.names:
                aliases[alias.asname or alias.name] = f"{node.module}.{alias.name}"
    return aliases


def _dotted(node: ast.expr, aliases: dict[str, str]) -> str:
    parts: list[str] = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        parts.append(aliases.get(node.id, node.id))
    elif isinstance(node, ast.Call):
        inner = _dotted(node.func, aliases)
        if inner in ("pathlib.Path", "Path"):
            parts.append("pathlib.Path")
    return ".".join(reversed(parts))


def analyse_shell(
    value: object,
    *,
    limits: Limits,
    cwd: str | None = None,
    sql: SqlAnalyser | None = None,
    depth: int = 0,
) -> dict[str, Any]:
    """Facts for a parameter typed ``shell``; see the module docstring."""
    if not isinstance(value, str):
        return _unparsed("not_a_string")
    if len(value) > limits.max_shell_chars:
        return _unparsed("too_long", length=len(value))
    analysis = _Analysis(limits, sql)
    if depth > limits.max_shell_depth:
        analysis.flags["depth_exceeded"] = True
        return analysis.result(parsed=False) | {"reason": "too_deep"}
    try:
        trees = bashlex.parse(value)
    except Exception as exc:  # bashlex raises ParsingError, NotImplementedError, ...
        return _unparsed("syntax_error", error=str(exc)[:200])
    analysis.max_depth = depth
    state = _State(cwd=cwd, source=value)
    for tree in trees:
        analysis.node(tree, state, depth, "top")
    return analysis.result(parsed=True)


def _unparsed(reason: str, **extra: Any) -> dict[str, Any]:
    """The most dangerous reading of a command that could not be read."""
    return {
        "type": "shell",
        "parsed": False,
        "reason": reason,
        **extra,
        "commands": [],
        "programs": [],
        "dynamic": True,
        "destructive": False,
        "destructive_possible": True,
    }
