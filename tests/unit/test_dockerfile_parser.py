"""The Dockerfile parser and docker's variable substitution: directives, comments,
continuations, heredocs, exec and shell forms, flags, ENV/LABEL forms, errors with line
numbers; $VAR / ${VAR} / ${VAR:-w} / ${VAR:+w} / ${VAR:?m}, quotes and escapes."""

from __future__ import annotations

import pytest

from dockyard.builder.parser import DockerfileSyntaxError, parse
from dockyard.builder.shell_words import expand, expand_words
from dockyard.errors import InvalidArgument


def test_instructions_forms_and_flags() -> None:
    doc = parse(
        "# syntax=docker/dockerfile:1\n"
        "ARG BASE=busybox\n"
        "from ${BASE} AS build\n"
        "RUN echo one && \\\n"
        "    echo two\n"
        "# a comment\n"
        "\n"
        'CMD ["sh", "-c", "echo hi"]\n'
        "COPY --from=build --chown=1:2 a b /dst/\n"
        "ENV A=1 B=\"two words\"\n"
        "ENV LEGACY some value here\n"
        "LABEL org.x=y\n"
        "HEALTHCHECK --interval=5s CMD wget -q localhost\n"
        "HEALTHCHECK NONE\n"
        "ONBUILD RUN make\n"
        'SHELL ["/bin/ash", "-c"]\n'
    )
    assert doc.directives == {"syntax": "docker/dockerfile:1"}
    cmds = [(i.cmd, i.line) for i in doc.instructions]
    assert cmds == [("arg", 2), ("from", 3), ("run", 4), ("cmd", 8), ("copy", 9), ("env", 10), ("env", 11),
                    ("label", 12), ("healthcheck", 13), ("healthcheck", 14), ("onbuild", 15), ("shell", 16)]
    arg, frm, run, cmd, copy, env, legacy, label, hc, hc_none, onbuild, shell = doc.instructions
    assert arg.args == ["BASE=busybox"]
    assert frm.args == ["${BASE}", "AS", "build"]
    assert run.args == ["echo one &&     echo two"] and not run.json
    assert run.original == "RUN echo one &&     echo two"
    assert cmd.args == ["sh", "-c", "echo hi"] and cmd.json
    assert copy.flags == {"from": ["build"], "chown": ["1:2"]} and copy.args == ["a", "b", "/dst/"]
    assert env.args == ["A=1", 'B="two words"']
    assert legacy.args == ["LEGACY=some value here"]
    assert label.args == ["org.x=y"]
    assert hc.flags == {"interval": ["5s"]} and hc.args == ["CMD-SHELL", "wget -q localhost"]
    assert hc_none.args == ["NONE"]
    assert onbuild.sub is not None and onbuild.sub.cmd == "run" and onbuild.sub.args == ["make"]
    assert shell.args == ["/bin/ash", "-c"] and shell.json


def test_escape_directive_and_continuations() -> None:
    doc = parse("# escape=`\nFROM scratch\nRUN dir c:\\ `\n  && echo x\n")
    assert doc.escape == "`"
    assert doc.instructions[1].args == ["dir c:\\   && echo x"]
    # a directive after an instruction is a comment; a blank line ends the directives
    doc = parse("\n# escape=`\nFROM scratch\n")
    assert doc.escape == "\\" and doc.directives == {}
    # comments and blank lines inside a continuation are dropped
    doc = parse("RUN a \\\n# comment\n\n  b\n")
    assert doc.instructions[0].args == ["a   b"]
    assert doc.warnings and "empty continuation line" in doc.warnings[0]


def test_case_insensitive_and_json_fallback() -> None:
    doc = parse("rUn echo hi\ncmd [\"a\", 1]\nentrypoint [not json\n")
    assert [i.cmd for i in doc.instructions] == ["run", "cmd", "entrypoint"]
    assert not doc.instructions[1].json and doc.instructions[1].args == ['["a", 1]']  # not all strings: shell form
    assert doc.instructions[2].args == ["[not json"]


def test_heredocs() -> None:
    doc = parse(
        "FROM busybox\n"
        "RUN <<EOF\n"
        "echo $HOME\n"
        "echo two\n"
        "EOF\n"
        "COPY <<-\"CONF\" /etc/app.conf\n"
        "\tkey=$value\n"
        "\tCONF\n"
        "RUN <<A cat - && cat <<B\n"
        "first\n"
        "A\n"
        "second\n"
        "B\n"
        "CMD [\"true\"]\n"
    )
    run, copy, two = doc.instructions[1:4]
    assert run.heredocs[0].name == "EOF" and run.heredocs[0].content == "echo $HOME\necho two\n" and run.heredocs[0].expand
    assert copy.heredocs[0].content == "key=$value\n" and not copy.heredocs[0].expand and copy.heredocs[0].strip_tabs
    assert copy.args == ['<<-"CONF"', "/etc/app.conf"]
    assert [h.content for h in two.heredocs] == ["first\n", "second\n"]
    assert doc.instructions[4].cmd == "cmd" and doc.instructions[4].line == 14
    with pytest.raises(DockerfileSyntaxError, match=r"^Dockerfile:2: unterminated heredoc EOF$"):
        parse("FROM x\nRUN <<EOF\necho\n")


@pytest.mark.parametrize(("text", "message"), [
    ("FROM busybox\n\n\n\n\n\nRUNN echo\n", "Dockerfile:7: unknown instruction: RUNN"),
    ("FROM\n", "Dockerfile:1: FROM requires either one or three arguments"),
    ("FROM a b\n", "Dockerfile:1: FROM requires either one or three arguments"),
    ("FROM a\nCOPY onlyone\n", "Dockerfile:2: COPY requires at least two arguments, but only one was provided. "
                               "Destination could not be determined"),
    ("FROM a\nCOPY --frm=x a b\n", "Dockerfile:2: unknown flag: frm"),
    ("FROM a\nCOPY --from a b\n", "Dockerfile:2: missing a value on flag: from"),
    ("FROM a\nENV A=1 B\n", "Dockerfile:2: Syntax error - can't find = in \"B\". Must be of the form: name=value"),
    ("FROM a\nENV ONLYKEY\n", "Dockerfile:2: ENV must have two arguments"),
    ("FROM a\nSHELL /bin/sh -c\n", "Dockerfile:2: SHELL requires the arguments to be in JSON form"),
    ("FROM a\nHEALTHCHECK WAT x\n", "Dockerfile:2: Unknown type \"WAT\" in HEALTHCHECK (try CMD)"),
    ("FROM a\nONBUILD FROM b\n", "Dockerfile:2: FROM isn't allowed as an ONBUILD trigger"),
    ("# escape=x\nFROM a\n", "Dockerfile:1: invalid escape token 'x' does not match ` or \\"),
    ("FROM a\nWORKDIR\n", "Dockerfile:2: WORKDIR requires at least one argument"),
])
def test_errors_carry_the_line(text: str, message: str) -> None:
    with pytest.raises(DockerfileSyntaxError) as err:
        parse(text)
    assert str(err.value) == message


ENV = {"A": "a", "EMPTY": "", "SPACED": "x y", "PATH": "/bin"}


@pytest.mark.parametrize(("word", "expected"), [
    ("$A", "a"), ("${A}", "a"), ("pre${A}post", "preapost"), ("$Apost", ""), ("$UNSET", ""),
    ("${UNSET:-dflt}", "dflt"), ("${EMPTY:-dflt}", "dflt"), ("${EMPTY-dflt}", ""), ("${UNSET-dflt}", "dflt"),
    ("${A:+alt}", "alt"), ("${EMPTY:+alt}", ""), ("${EMPTY+alt}", "alt"), ("${UNSET+alt}", ""),
    ("${UNSET:-$A}", "a"), ("${UNSET:-${A:-b}c}", "ac"),
    ("\\$A", "$A"), ("'$A'", "$A"), ('"$A"', "a"), ('"\\$A"', "$A"), ('"a\\b"', "a\\b"),
    ("$", "$"), ("a$", "a$"), ("${PATH}:/usr/bin", "/bin:/usr/bin"), ('"quoted words" here', "quoted words here"),
])
def test_expand(word: str, expected: str) -> None:
    assert expand(word, ENV) == expected


def test_expand_words_and_errors() -> None:
    assert expand_words("$SPACED 'a b' \"$A c\" ''", ENV) == ["x", "y", "a b", "a c", ""]
    assert expand_words("  ", ENV) == []
    assert expand("`$A", ENV, escape="`") == "$A"
    with pytest.raises(InvalidArgument, match="UNSET: needed"):
        expand("${UNSET:?needed}", ENV)
    with pytest.raises(InvalidArgument, match="matching single-quote"):
        expand("'open", ENV)
    with pytest.raises(InvalidArgument, match="missing '}'"):
        expand("${A:-x", ENV)
    with pytest.raises(InvalidArgument, match="unsupported modifier"):
        expand("${A%x}", ENV)


def test_expand_heredoc_keeps_quotes() -> None:
    from dockyard.builder.shell_words import expand_heredoc

    assert expand_heredoc('say "$A" \'$A\' \\$A ${UNSET:-d}\n', ENV) == "say \"a\" 'a' $A d\n"
