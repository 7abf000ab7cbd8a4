"""The Go text/template subset behind --format."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from dockyard.cli.templates import (
    TemplateError,
    expand_escapes,
    go_sprintf,
    go_str,
    parse,
    render,
    render_template,
)

DATA = {
    "ID": "abc123",
    "Name": "web",
    "Count": 3,
    "Ratio": 0.5,
    "Running": True,
    "Empty": "",
    "Nothing": None,
    "Config": {"Image": "alpine:latest", "Labels": {"com.example": "yes", "a": "1"}},
    "Names": ["one", "two", "three"],
    "Ports": [],
    "Mounts": [{"Source": "/a", "Destination": "/x"}, {"Source": "/b", "Destination": "/y"}],
}


@pytest.mark.parametrize(
    ("tmpl", "expected"),
    [
        ("plain text", "plain text"),
        ("{{.ID}}", "abc123"),
        ("id={{.ID}} name={{ .Name }}", "id=abc123 name=web"),
        ("{{.Config.Image}}", "alpine:latest"),
        ("{{.Count}} {{.Ratio}} {{.Running}}", "3 0.5 true"),
        ("{{.Nothing}}", "<nil>"),
        ("{{.Missing}}", "<no value>"),
        ("{{.Names}}", "[one two three]"),
        ("{{.Config.Labels}}", "map[a:1 com.example:yes]"),
        ("{{json .Config}}", '{"Image":"alpine:latest","Labels":{"com.example":"yes","a":"1"}}'),
        ("{{json .Names}}", '["one","two","three"]'),
        ("{{json .Nothing}}", "null"),
        ("{{json .Missing}}", "null"),
        ('{{index .Config.Labels "com.example"}}', "yes"),
        ('{{index .Config.Labels "nope"}}', ""),
        ("{{index .Names 1}}", "two"),
        ("{{(index .Mounts 1).Source}}", "/b"),
        ("{{len .Names}}", "3"),
        ("{{.Name | upper}}", "WEB"),
        ("{{.Name | upper | lower}}", "web"),
        ("{{upper .Name}}", "WEB"),
        ('{{title "hello wORLD-x"}}', "Hello WORLD-X"),
        ('{{join .Names ","}}', "one,two,three"),
        ('{{split "a:b:c" ":"}}', "[a b c]"),
        ('{{index (split "a:b:c" ":") 2}}', "c"),
        ("{{truncate .ID 3}}", "abc"),
        ("{{truncate .ID 30}}", "abc123"),
        ("[{{pad .Name 2 1}}][{{pad .Empty 2 1}}]", "[  web ][]"),
        ("{{println .Name .Count}}", "web 3\n"),
        ("{{print .Name .Count}}", "web3"),
        ("{{print 1 2}}", "1 2"),
        ('{{printf "%s:%d" .Name .Count}}', "web:3"),
        ('{{printf "%-6s|" .Name}}', "web   |"),
        ('{{printf "%6s|%q|%v" .Name .Name .Names}}', '   web|"web"|[one two three]'),
        ('{{.Name | printf "<%s>"}}', "<web>"),
        ("{{.Ports}}", "[]"),
    ],
)
def test_render(tmpl: str, expected: str) -> None:
    assert render(tmpl, DATA) == expected


@pytest.mark.parametrize(
    ("tmpl", "expected"),
    [
        ("{{if .Running}}up{{end}}", "up"),
        ("{{if .Empty}}x{{else}}empty{{end}}", "empty"),
        ("{{if .Ports}}x{{else}}no ports{{end}}", "no ports"),
        ("{{if .Nothing}}x{{else}}nil{{end}}", "nil"),
        ("{{if .Missing}}x{{else}}missing{{end}}", "missing"),
        ("{{if .Empty}}a{{else if .Count}}b{{else}}c{{end}}", "b"),
        ("{{if .Empty}}a{{else if .Ports}}b{{else}}c{{end}}", "c"),
        ("{{if and .Running .Count}}yes{{end}}", "yes"),
        ("{{if or .Empty .Ports}}yes{{else}}no{{end}}", "no"),
        ("{{if not .Empty}}yes{{end}}", "yes"),
        ('{{if eq .Name "db" "web"}}match{{end}}', "match"),
        ("{{if ne .Count 3}}x{{else}}three{{end}}", "three"),
        ("{{if lt .Count 5}}small{{end}}", "small"),
        ("{{with .Config}}{{.Image}}{{end}}", "alpine:latest"),
        ("{{with .Empty}}x{{else}}none{{end}}", "none"),
        ("{{range .Names}}[{{.}}]{{end}}", "[one][two][three]"),
        ("{{range $i, $n := .Names}}{{$i}}={{$n}} {{end}}", "0=one 1=two 2=three "),
        ("{{range $k, $v := .Config.Labels}}{{$k}}={{$v}};{{end}}", "a=1;com.example=yes;"),
        ("{{range .Mounts}}{{.Source}}:{{.Destination}},{{end}}", "/a:/x,/b:/y,"),
        ("{{range .Ports}}x{{else}}none{{end}}", "none"),
        ("{{range .Missing}}x{{end}}", ""),
        ('{{range .Names}}{{if eq . "two"}}{{break}}{{end}}{{.}}{{end}}', "one"),
        ('{{range .Names}}{{if eq . "two"}}{{continue}}{{end}}{{.}}{{end}}', "onethree"),
        ("{{range .Names}}{{$.Name}}{{end}}", "webwebweb"),
        ("{{$x := .Name}}{{$x}}", "web"),
        ("{{$x := 1}}{{if true}}{{$x = 2}}{{end}}{{$x}}", "2"),
        ("{{range 3}}{{.}}{{end}}", "012"),
        ("a {{- /* comment */ -}} b", "ab"),
        ("{{/* only a comment */}}", ""),
    ],
)
def test_control_flow(tmpl: str, expected: str) -> None:
    assert render(tmpl, DATA) == expected


def test_trim_markers() -> None:
    assert render("a  {{- .Name}}", DATA) == "aweb"
    assert render("{{.Name -}}  \n\t b", DATA) == "webb"
    assert render("x \n {{- .Name -}} \n y", DATA) == "xweby"
    # "{{-3}}" is the number -3, not a trim marker
    assert render("a {{-3}}", DATA) == "a -3"
    tmpl = "{{range .Names -}}\n  {{.}}\n{{- end}}"
    assert render(tmpl, DATA) == "onetwothree"


def test_literals() -> None:
    assert render('{{"a\\tb\\u00e9"}}', {}) == "a\tb\u00e9"
    assert render("{{`raw\\n`}}", {}) == "raw\\n"
    assert render("{{1.5}} {{0x1F}} {{1e6}} {{-2}} {{'a'}}", {}) == "1.5 31 1e+06 -2 97"
    assert render("{{true}} {{false}} {{print nil}}", {}) == "true false <nil>"
    with pytest.raises(TemplateError, match="nil is not a command"):
        parse("{{nil}}")


def test_expand_escapes() -> None:
    assert expand_escapes(r"{{.A}}\t{{.B}}\n") == "{{.A}}\t{{.B}}\n"
    # render_template (inspect -f) is pure Go template: no escape expansion
    assert render_template(r"{{.ID}}\t", DATA) == "abc123\\t"


@dataclass
class Container:
    ID: str
    Labels: dict[str, str] = field(default_factory=dict)
    _secret: str = "hidden"

    def Names(self) -> str:  # noqa: N802 - Go-style exported method
        return "web,db"

    def Label(self, key: str) -> str:  # noqa: N802
        return self.Labels.get(key, "")

    def Boom(self) -> str:  # noqa: N802
        raise ValueError("kaput")


def test_objects_attributes_and_methods() -> None:
    c = Container("cid", {"tier": "front"})
    assert render('{{.ID}} {{.Names}} {{.Label "tier"}}', c) == "cid web,db front"
    assert render('{{"tier" | .Label}}', c) == "front"
    assert render("{{json .}}", c) == '{"ID":"cid","Labels":{"tier":"front"}}'
    with pytest.raises(TemplateError, match="can't evaluate field Nope in type Container"):
        render("{{.Nope}}", c)
    with pytest.raises(TemplateError, match="can't evaluate field _secret"):
        render("{{._secret}}", c)
    with pytest.raises(TemplateError, match="error calling Boom: kaput"):
        render("{{.Boom}}", c)


def test_dict_keys_are_case_sensitive() -> None:
    assert render("{{.id}}", {"ID": "x"}) == "<no value>"


@pytest.mark.parametrize(
    ("fmt", "args", "expected"),
    [
        ("%s|%5s|%-5s|%.2s", ("ab", "ab", "ab", "abc"), "ab|   ab|ab   |ab"),
        ("%d|%05d|%+d|%x|%X|%o|%b", (42, 42, 42, 255, 255, 8, 5), "42|00042|+42|ff|FF|10|101"),
        ("%v %v %v %v", (1.0, 1e21, 0.000012, 123456.0), "1 1e+21 1.2e-05 123456"),
        ("%v", (1234567.0,), "1.234567e+06"),
        ("%.2f|%8.3f|%e|%g", (3.14159, 2.5, 1234.5, 0.1), "3.14|   2.500|1.234500e+03|0.1"),
        ("%q|%q", ('a"b\n', 65), '"a\\"b\\n"|\'A\''),
        ("%t %T %T", (True, "s", 1), "true string int"),
        ("%%|%c", (9731,), "%|\u2603"),
        ("%d", ("x",), "%!d(string=x)"),
        ("%s %s", ("a",), "a %!s(MISSING)"),
        ("%s", ("a", 1), "a%!(EXTRA int=1)"),
        ("%*d|%-*d|", (4, 7, 3, 1), "   7|1  |"),
        ("%v|%v|%v", ([1, "a"], {"b": 2, "a": None}, None), "[1 a]|map[a:<nil> b:2]|<nil>"),
        ("100%", (), "100%!(NOVERB)"),
    ],
)
def test_printf(fmt: str, args: tuple[object, ...], expected: str) -> None:
    assert go_sprintf(fmt, *args) == expected


def test_go_str_floats() -> None:
    assert go_str(0.0) == "0"
    assert go_str(-2.5) == "-2.5"
    assert go_str(100000.0) == "100000"
    assert go_str(1e6) == "1e+06"
    assert go_str(0.0001) == "0.0001"
    assert go_str(0.00001) == "1e-05"
    assert go_str(float("inf")) == "+Inf"


@pytest.mark.parametrize(
    ("tmpl", "message"),
    [
        ("{{.Name", "template parsing error: template: :1: unclosed action"),
        ("{{foo .Name}}", 'template parsing error: template: :1: function "foo" not defined'),
        ("{{if .X}}a", "template parsing error: template: :1: unexpected EOF"),
        ("a{{end}}", "template parsing error: template: :1: unexpected {{end}}"),
        ("{{else}}", "template parsing error: template: :1: unexpected {{else}}"),
        ("{{}}", "template parsing error: template: :1: missing value for command"),
        ("line1\n{{.A | }}", "template parsing error: template: :2: missing value for command"),
        ("{{$nope}}", 'template parsing error: template: :1: undefined variable "$nope"'),
        ('{{"abc}}', "template parsing error: template: :1: unterminated quoted string"),
        ("{{break}}", "template parsing error: template: :1: {{break}} outside {{range}}"),
        ("{{.A #}}", "unrecognized character in action: U+0023 '#'"),
        ("{{/* x }}", "unclosed comment"),
        ('{{define "x"}}{{end}}', "{{define}} is not supported"),
    ],
)
def test_parse_errors(tmpl: str, message: str) -> None:
    with pytest.raises(TemplateError) as info:
        parse(tmpl)
    text = str(info.value)
    assert message in text
    assert text.startswith("template parsing error: ")
    assert "\n" not in text


@pytest.mark.parametrize(
    ("tmpl", "message"),
    [
        (
            "{{.Missing.Deeper}}",
            'template parsing error: template: :1:2: executing "" at <.Missing.Deeper>: '
            "nil pointer evaluating interface {}.Deeper",
        ),
        ("{{.Name.Foo}}", "can't evaluate field Foo in type string"),
        ("{{index .Names 7}}", "error calling index: index out of range: 7"),
        ("{{lower}}", "wrong number of args for lower: want 1 got 0"),
        ("{{.Name 1}}", "Name is not a method but has arguments"),
        ("{{range .Name}}{{end}}", "range can't iterate over web"),
        ('{{join "x" ","}}', "expected []string; got string"),
        ("{{lt .Name 3}}", "incompatible types for comparison"),
        ("{{1 | .Name}}", "Name is not a method but has arguments"),
    ],
)
def test_exec_errors(tmpl: str, message: str) -> None:
    t = parse(tmpl)
    with pytest.raises(TemplateError) as info:
        t.execute(DATA)
    assert message in str(info.value)
    assert str(info.value).startswith("template parsing error: template: :1:")


def test_header_mode() -> None:
    t = parse(
        '{{.ID}}\t{{.Name | upper}}\t{{json .Config}}\t{{index .Config.Labels "a"}}\t{{.Other}}'
    )
    headers = {"ID": "CONTAINER ID", "Name": "NAME", "Config": "CONFIG"}
    assert t.execute_header(headers) == "CONTAINER ID\tNAME\tCONFIG\tCONFIG\tOTHER"
    assert parse("{{range .Names}}{{.}}{{end}}").execute_header({"Names": "NAMES"}) == "NAMES"
    assert parse('{{printf "%-8s|" .ID}}').execute_header({"ID": "ID"}) == "ID      |"


def test_template_is_reusable() -> None:
    t = parse("{{$x := .Name}}{{$x}}")
    assert t.execute({"Name": "a"}) == "a"
    assert t.execute({"Name": "b"}) == "b"
