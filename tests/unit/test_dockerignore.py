""".dockerignore semantics (moby's patternmatcher): docker's documented examples, cleaning,
classes and escapes, the parent rule and exceptions, refused patterns, and walk() over a
real directory tree (symlinks, the always-sent Dockerfile/.dockerignore, skipped dirs)."""

from __future__ import annotations

import os
import random

import pytest

from dockyard.builder import dockerignore
from dockyard.builder.dockerignore import DockerignoreError, Matcher, Pattern, load, parse, walk
from dockyard.errors import InvalidArgument


def excluded(text: str, path: str) -> bool:
    return Matcher(parse(text)).matches(path)


# (dockerignore text, excluded paths, included paths)
CORPUS = [
    # docker's documented example
    ("# comment\n*/temp*\n*/*/temp*\ntemp?\n",
     ["somedir/temporary.txt", "somedir/temp", "somedir/temp/inner.txt",
      "somedir/subdir/temporary.txt", "tempa", "tempb", "tempb/x"],
     ["temp", "tempab", "temporary.txt", "a/b/c/temp.txt", "somedir", "x/y/z/tempa"]),
    ("**/*.go", ["x.go", "a/x.go", "a/b/c/x.go", "a/b.go/c"], ["x.goo", "go", "a/xgo"]),
    ("*.md\n!README.md\n", ["a.md", "README.markdown.md"], ["README.md", "docs/a.md", "a.txt"]),
    ("*.md\n!README*.md\nREADME-secret.md\n",
     ["other.md", "README-secret.md"], ["README.md", "README-public.md"]),
    ("*.md\nREADME-secret.md\n!README*.md\n",
     ["other.md"], ["README-secret.md", "README.md"]),
    ("**", ["a", "a/b/c", ".dockerignore", "Dockerfile"], []),
    ("**/", ["a", "a/b"], []),
    # leading /, ./ and trailing / all mean the path relative to the root
    ("/foo/bar", ["foo/bar", "foo/bar/baz"], ["foo", "x/foo/bar", "foo/barx"]),
    ("./foo/bar/", ["foo/bar", "foo/bar/baz"], ["x/foo/bar"]),
    ("foo//bar/./baz/../qux", ["foo/bar/qux"], ["foo/bar/baz", "foo/bar"]),
    # a directory pattern excludes everything under it (the parent rule)
    ("node_modules", ["node_modules", "node_modules/a/b/c.js"], ["src/node_modules", "node_modules2"]),
    ("*", ["a", "a/b/c", ".git/HEAD"], []),
    ("*/", ["a", "a/b"], []),  # cleaned to *: a trailing / does not restrict to directories
    # character classes: Go's filepath.Match, negation with ^ (and ! is a member)
    ("[a-c]at", ["aat", "bat", "cat"], ["dat", "at", "bbat", "Bat"]),
    ("[^a]x", ["bx", "_x"], ["ax", "x", "bbx"]),
    ("[!a]x", ["!x", "ax"], ["bx"]),
    ("x[\\]]y", ["x]y"], ["x\\y", "xy"]),
    ("x[\\-a]y", ["x-y", "xay"], ["xby"]),
    ("[*]", ["*"], ["a", "**"]),
    ("a[.]b", ["a.b"], ["axb"]),
    # escapes
    ("\\*.txt", ["*.txt"], ["a.txt"]),
    ("a\\?", ["a?"], ["ab"]),
    ("\\#foo", ["#foo"], ["foo"]),
    ("\\!keep", ["!keep"], ["keep"]),
    # regexp metacharacters are literal
    ("a.b+(c)|{d}$", ["a.b+(c)|{d}$"], ["aab+(c)|{d}$", "a.bb(c)|{d}$"]),
    ("x^y*", ["x^y", "x^yz"], ["y"]),
    # ? and * never match a /
    ("a?b", ["a_b"], ["a/b"]),
    ("a*b", ["ab", "axxb"], ["a/b", "a/x/b"]),
    # ** in the middle: any number of directories, including none
    ("a/**/b", ["a/b", "a/x/b", "a/x/y/b", "a/b/c"], ["b", "ab", "x/a/b"]),
    ("a/**", ["a/x", "a/x/y"], ["a", "ab"]),  # the directory itself is not matched
    ("a**", ["a", "ab", "abc/d"], ["ba"]),
    ("**/foo", ["foo", "x/foo", "x/y/foo", "foo/bar"], ["xfoo", "foox"]),
    ("**.pyc", ["a.pyc", "dir/b.pyc", "dir/sub/c.pyc"], ["a.py", "a.pycx"]),  # moby's suffix test
    ("**/*.py[co]", ["a.pyc", "x/y/a.pyo"], ["a.py", "a.pyx"]),
    # exceptions re-include everything under them too
    ("*\n!src\n", ["docs", "docs/a"], ["src", "src/a/b.py"]),
    ("*\n!data\ndata/file1\n", ["data/file1", "other"], ["data", "data/file2"]),  # moby#31630
    ("**\n!util/docker/web\nutil/docker/web/foo\n",  # buildx#850
     ["util", "util/docker", "util/docker/web/foo", "x"], ["util/docker/web", "util/docker/web/bar"]),
    ("d/f\n!d\n", [], ["d", "d/f"]),  # the last match wins, via the parent too
    # comments only in column 1; whitespace trimmed
    ("  # not a comment\n", ["# not a comment"], ["not a comment"]),
    ("#*\n", [], ["a", "#*"]),
    ("   spaced.txt   \n\n\t\n", ["spaced.txt"], ["   spaced.txt"]),
    ("! keep\n*\n", ["keep"], []),  # "! keep" is !keep, but a later * wins
    ("*\n! keep\n", ["other"], ["keep"]),
    # a lone / and a pattern cleaned to . exclude nothing; .. patterns never match
    ("/\n", [], ["a", "b/c"]),
    ("a/..\n", [], ["a", "b"]),
    ("../a\n", [], ["a", "x/a"]),
]


@pytest.mark.parametrize(("text", "out", "keep"), CORPUS)
def test_corpus(text: str, out: list[str], keep: list[str]) -> None:
    m = Matcher(parse(text))
    for p in out:
        assert m.matches(p), f"{text!r} should exclude {p!r}"
    for p in keep:
        assert not m.matches(p), f"{text!r} should keep {p!r}"


def test_parse_cleans_like_readall() -> None:
    text = "\ufeff# c\n/a/\n./b/../c\nd//e\n!/f/./g\n! h \n\r\n  i  \r\n#j\n../k\n"
    assert [str(p) for p in parse(text)] == ["a", "c", "d/e", "!f/g", "!h", "i", "../k"]
    # kept, as docker keeps them, though they can match no path of the context
    assert [str(p) for p in parse("/\na/..\n/../..\n")] == ["/", ".", "/"]
    pats = parse("!x\ny")
    assert [(p.text, p.exception) for p in pats] == [("x", True), ("y", False)]


def test_crlf_and_bom() -> None:
    m = Matcher(parse("\ufeffa.txt\r\nb.txt\r\n"))
    assert m.matches("a.txt") and m.matches("b.txt")
    assert not m.matches("\ufeffa.txt")


@pytest.mark.parametrize("text", ["!", " ! ", "!/", "[", "a[", "[]", "[]a]", "[^]", "[a-]",
                                  "[-a]", "[a-b-c]", "[z-a]", "a\\", "[a", "[\\"])
def test_refused_patterns(text: str) -> None:
    with pytest.raises(DockerignoreError) as err:
        parse("ok\n" + text + "\n")
    assert isinstance(err.value, InvalidArgument) and isinstance(err.value, ValueError)
    assert "line 2" in str(err.value)


def test_matcher_from_strings_is_patternmatcher_new() -> None:
    m = Matcher(["*.log", "", "  ", "!keep.log"])
    assert [str(p) for p in m.patterns] == ["*.log", "!keep.log"]
    assert m.matches("a.log") and not m.matches("keep.log")
    assert m.has_exceptions and not Matcher(["a"]).has_exceptions
    with pytest.raises(DockerignoreError):
        Matcher(["!"])


def test_matches_normalises_its_argument() -> None:
    m = Matcher(parse("a/b"))
    assert m.matches("./a/b") and m.matches("/a/b") and m.matches("a//b/c")
    assert not Matcher(parse("*")).matches(".") and not Matcher(parse("**")).matches("")


def test_pattern_match_is_direct_only() -> None:
    p = Pattern("a/*")
    assert p.match("a/b") and not p.match("a/b/c")
    assert Matcher([p]).matches("a/b/c")  # but the parent rule applies in a matcher
    # as in Go's filepath.Match and moby's regexp, a negated class can match a /
    assert Pattern("a[^x]b").match("a/b") and not Pattern("a[^/]b").match("a/b")


def test_excludes_dir_entirely() -> None:
    assert Matcher(parse("node_modules")).excludes_dir_entirely("node_modules")
    assert not Matcher(parse("node_modules")).excludes_dir_entirely("src")
    assert not Matcher(parse("node_modules\n!node_modules/keep")).excludes_dir_entirely("node_modules")
    assert not Matcher(parse("node_modules\n!**/*.py")).excludes_dir_entirely("node_modules")
    assert not Matcher(parse("node_modules\n!*/keep")).excludes_dir_entirely("node_modules")
    assert not Matcher(parse("*\n!a/**")).excludes_dir_entirely("a")
    assert not Matcher(parse("*\n!a**")).excludes_dir_entirely("abc")
    # exceptions that cannot reach beneath the directory do not stop the skip
    assert Matcher(parse("node_modules\n!src/*.py")).excludes_dir_entirely("node_modules")
    assert Matcher(parse("node_modules\n!node_modules")).excludes_dir_entirely("x") is False
    assert Matcher(parse("*\n!a/*.py\n")).excludes_dir_entirely("b")
    assert Matcher(parse("*\n!a/**\n")).excludes_dir_entirely("b")
    assert Matcher(parse("a\n!a/*\na/b\n")).excludes_dir_entirely("a/b")  # !a/* only via parent
    assert Matcher(parse("*\n!*.py\n")).excludes_dir_entirely("a")
    assert not Matcher(parse("*\n!*/x.py\n")).excludes_dir_entirely("a")
    assert not Matcher(parse("*\n![^x]y/z\n")).excludes_dir_entirely("a")  # [^x] can match /


def _random_paths(rng: random.Random, n: int) -> list[str]:
    names = ["a", "b", "ab", "x.py", "y.md", "node_modules", "keep", "README.md", ".git"]
    out = set()
    for _ in range(n):
        out.add("/".join(rng.choice(names) for _ in range(rng.randint(1, 4))))
    return sorted(out)


def test_excludes_dir_entirely_is_conservative() -> None:
    rng = random.Random(7)
    pool = ["*", "a", "a/*", "**/b", "*.py", "node_modules", "**/keep", "a/**", "*/b", "ab?",
            "[ab]", "**", "x.py", "a/b", "**.md", "b/**/keep", "[^a]b/keep", "?/*/x.py"]
    paths = _random_paths(rng, 300)
    dirs = sorted({p.rsplit("/", 1)[0] for p in paths if "/" in p})
    skips = 0
    for _ in range(300):
        text = "\n".join(("!" if rng.random() < 0.4 else "") + rng.choice(pool)
                         for _ in range(rng.randint(1, 5)))
        m = Matcher(parse(text))
        for d in dirs:
            if m.excludes_dir_entirely(d):
                skips += 1
                for p in paths:
                    if p.startswith(d + "/"):
                        assert m.matches(p), (text, d, p)
    assert skips > 100  # the check is exercised, not vacuous


def _tree(root: str, files: list[str]) -> None:
    for f in files:
        path = os.path.join(root, f)
        if f.endswith("/"):
            os.makedirs(path, exist_ok=True)
        else:
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, "w") as fh:
                fh.write("x")


def test_walk_excluded_dir_with_reincluded_file(tmp_path) -> None:
    _tree(str(tmp_path), ["Dockerfile", "build/keep.txt", "build/other.o", "build/sub/x.o",
                          "src/main.c", "src/z/", "b.log"])
    m = Matcher(parse("build\n!build/keep.txt\n*.log\n"))
    assert list(walk(str(tmp_path), m)) == [
        "Dockerfile", "build", "build/keep.txt", "src", "src/main.c", "src/z"]


def test_walk_symlinks_not_followed(tmp_path) -> None:
    _tree(str(tmp_path), ["real/f", "a.txt"])
    os.symlink("real", tmp_path / "link")
    os.symlink("/nonexistent", tmp_path / "dangling")
    got = list(walk(str(tmp_path), Matcher()))
    assert got == ["a.txt", "dangling", "link", "real", "real/f"]
    assert "link/f" not in got
    got = list(walk(str(tmp_path), Matcher(parse("real"))))
    assert got == ["a.txt", "dangling", "link"]


def test_walk_always_sends_dockerfile_and_dockerignore(tmp_path) -> None:
    _tree(str(tmp_path), ["Dockerfile", ".dockerignore", "app.py", "docker/Dockerfile.dev",
                          "docker/secret"])
    m = Matcher(parse("*\n"))
    assert list(walk(str(tmp_path), m)) == []
    got = list(walk(str(tmp_path), m, always={"Dockerfile", ".dockerignore"}))
    assert got == [".dockerignore", "Dockerfile"]
    got = list(walk(str(tmp_path), m, always={"./docker/Dockerfile.dev", ".dockerignore"}))
    assert got == [".dockerignore", "docker", "docker/Dockerfile.dev"]
    # a name with glob characters is taken literally
    _tree(str(tmp_path), ["Dockerfile[x]", "Dockerfilex"])
    got = list(walk(str(tmp_path), m, always={"Dockerfile[x]"}))
    assert got == ["Dockerfile[x]"]


def test_walk_skips_excluded_dirs_when_allowed(tmp_path, monkeypatch) -> None:
    _tree(str(tmp_path), ["node_modules/a/b.js", "node_modules/c.py", "src/d.py", "e.txt"])
    listed: list[str] = []
    real = dockerignore._entries

    def spy(path: str):
        listed.append(os.path.relpath(path, tmp_path))
        return real(path)

    monkeypatch.setattr(dockerignore, "_entries", spy)
    assert list(walk(str(tmp_path), Matcher(parse("node_modules")))) == ["e.txt", "src", "src/d.py"]
    assert listed == [".", "src"]
    listed.clear()
    got = list(walk(str(tmp_path), Matcher(parse("node_modules\n!**/*.py"))))
    assert got == ["e.txt", "node_modules", "node_modules/c.py", "src", "src/d.py"]
    assert "node_modules" in listed and "node_modules/a" in listed


def test_walk_matches_brute_force(tmp_path) -> None:
    rng = random.Random(11)
    paths = _random_paths(rng, 120)
    dirs = {p.rsplit("/", 1)[0] for p in paths if "/" in p}
    files = [p for p in paths if p not in dirs and not any(d.startswith(p + "/") for d in dirs)]
    _tree(str(tmp_path), files)
    everything = []
    for dirpath, dirnames, filenames in os.walk(tmp_path):
        rel = os.path.relpath(dirpath, tmp_path)
        for n in dirnames + filenames:
            everything.append(n if rel == "." else f"{rel}/{n}")
    pool = ["*", "a", "a/*", "**/b", "*.py", "**/keep", "a/**", "*/b", "[ab]", "**.md", "ab/**/x.py"]
    for _ in range(40):
        text = "\n".join(("!" if rng.random() < 0.4 else "") + rng.choice(pool)
                         for _ in range(rng.randint(1, 4)))
        m = Matcher(parse(text))
        sent = {p for p in everything if not m.matches(p)}
        for p in list(sent):  # parents of what is sent are sent too
            while "/" in p:
                p = p.rsplit("/", 1)[0]
                sent.add(p)
        got = list(walk(str(tmp_path), m))
        assert set(got) == sent, text
        assert len(got) == len(set(got))


def test_walk_order_is_sorted_depth_first(tmp_path) -> None:
    _tree(str(tmp_path), ["b/2", "b/1", "a", "c/", "B"])
    assert list(walk(str(tmp_path), Matcher())) == ["B", "a", "b", "b/1", "b/2", "c"]


def test_load(tmp_path) -> None:
    assert load(str(tmp_path)) == []
    (tmp_path / ".dockerignore").write_bytes(b"\xef\xbb\xbf*.o\r\n!main.o\r\n")
    assert [str(p) for p in load(str(tmp_path))] == ["*.o", "!main.o"]
