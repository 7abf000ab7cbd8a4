import pytest

from dockyard import reference
from dockyard.errors import InvalidArgument
from dockyard.reference import Reference, is_full_id, looks_like_id, parse, parse_repo_tag

HEX = "0123456789abcdef" * 4
DIGEST = f"sha256:{HEX}"


@pytest.mark.parametrize(
    "text, domain, path, tag, digest",
    [
        ("busybox", "docker.io", "library/busybox", "latest", None),
        ("busybox:1.36", "docker.io", "library/busybox", "1.36", None),
        ("library/busybox", "docker.io", "library/busybox", "latest", None),
        ("docker.io/busybox", "docker.io", "library/busybox", "latest", None),
        ("index.docker.io/library/busybox", "docker.io", "library/busybox", "latest", None),
        ("user/app:v1", "docker.io", "user/app", "v1", None),
        ("localhost:5000/a/b:t", "localhost:5000", "a/b", "t", None),
        ("localhost/a", "localhost", "a", "latest", None),
        ("example.com/a/b/c:tag", "example.com", "a/b/c", "tag", None),
        ("[::1]:5000/a", "[::1]:5000", "a", "latest", None),
        ("[2001:db8::1]/a", "[2001:db8::1]", "a", "latest", None),
        (f"busybox@{DIGEST}", "docker.io", "library/busybox", None, DIGEST),
        (f"busybox:1@{DIGEST}", "docker.io", "library/busybox", "1", DIGEST),
        # An uppercase first component is a registry, as in distribution/reference.
        ("Foo/bar", "Foo", "bar", "latest", None),
        # No "/": "localhost:5000" is repository "localhost" with tag "5000".
        ("localhost:5000", "docker.io", "library/localhost", "5000", None),
        ("a__b/c-d--e.f_g:T_1.x-y", "docker.io", "a__b/c-d--e.f_g", "T_1.x-y", None),
        ("127.0.0.1:5000/x", "127.0.0.1:5000", "x", "latest", None),
    ],
)
def test_parse(text, domain, path, tag, digest):
    assert parse(text) == Reference(domain, path, tag, digest)


@pytest.mark.parametrize(
    "text, full, familiar, familiar_name",
    [
        ("busybox", "docker.io/library/busybox:latest", "busybox:latest", "busybox"),
        ("user/app:v1", "docker.io/user/app:v1", "user/app:v1", "user/app"),
        ("library/a/b", "docker.io/library/a/b:latest", "library/a/b:latest", "library/a/b"),
        ("localhost:5000/a/b:t", "localhost:5000/a/b:t", "localhost:5000/a/b:t", "localhost:5000/a/b"),
        (f"busybox@{DIGEST}", f"docker.io/library/busybox@{DIGEST}", f"busybox@{DIGEST}", "busybox"),
        (f"busybox:1@{DIGEST}", f"docker.io/library/busybox:1@{DIGEST}", f"busybox:1@{DIGEST}", "busybox"),
    ],
)
def test_string_forms(text, full, familiar, familiar_name):
    ref = parse(text)
    assert str(ref) == full
    assert ref.familiar() == familiar
    assert ref.familiar_name == familiar_name
    assert parse(full) == ref  # the full form round-trips


def test_name():
    assert parse("busybox").name == "docker.io/library/busybox"
    assert parse("localhost/a:t").name == "localhost/a"


def test_default_tag_off():
    assert parse("busybox", default_tag=False).tag is None
    assert parse("busybox:1", default_tag=False).tag == "1"
    assert str(parse("busybox", default_tag=False)) == "docker.io/library/busybox"


MISSING = "invalid reference format"


@pytest.mark.parametrize(
    "text, message",
    [
        ("Busybox", "invalid reference format: repository name (library/Busybox) must be lowercase"),
        ("user/App:1", "invalid reference format: repository name (user/App) must be lowercase"),
        ("localhost/Foo", "invalid reference format: repository name (Foo) must be lowercase"),
        ("busybox:", MISSING),
        (":tag", MISSING),
        ("", MISSING),
        ("busybox@sha256:abc", MISSING),
        (f"busybox@md5:{'a' * 32}", f"unsupported digest algorithm: md5:{'a' * 32}"),
        (f"busybox@sha256:{'a' * 40}", f"invalid checksum digest length: sha256:{'a' * 40}"),
        (f"busybox@sha256:{HEX.upper()}", f"invalid checksum digest format: sha256:{HEX.upper()}"),
        ("a//b", MISSING),
        ("-a", MISSING),
        ("a-", MISSING),
        ("a:b:c", MISSING),
        ("a/b:", MISSING),
        ("busybox:" + "t" * 129, MISSING),
        ("busybox:-t", MISSING),
        ("a b", MISSING),
        ("busybox\n", MISSING),
        ("localhost:port/a", MISSING),
        ("exa_mple.com/a", MISSING),
        ("émoji", MISSING),
        (HEX, f"invalid repository name ({HEX}), cannot specify 64-byte hexadecimal strings"),
        ("a/" + "b" * 250, "repository name must not be more than 255 characters"),
    ],
)
def test_parse_errors(text, message):
    with pytest.raises(InvalidArgument) as exc:
        parse(text)
    assert str(exc.value) == message


def test_length_limits_are_inclusive():
    assert parse("busybox:" + "t" * 128).tag == "t" * 128
    # 255 characters including the implied "docker.io/" domain is still fine.
    path = "a/" + "b" * (255 - len("docker.io/a/"))
    assert len(parse(path).name) == 255
    with pytest.raises(InvalidArgument):
        parse(path + "b")


def test_not_a_string():
    with pytest.raises(InvalidArgument):
        parse(None)  # type: ignore[arg-type]


def test_with_tag_and_digest():
    ref = parse("busybox:1")
    assert str(ref.with_tag("2")) == "docker.io/library/busybox:2"
    assert str(ref.with_digest(DIGEST)) == f"docker.io/library/busybox:1@{DIGEST}"
    assert ref.without_tag().tag is None
    with pytest.raises(InvalidArgument, match="invalid tag format"):
        ref.with_tag("bad tag")
    with pytest.raises(InvalidArgument):
        ref.with_tag("")
    with pytest.raises(InvalidArgument):
        ref.with_digest("sha256:abc")
    assert ref.tag == "1"  # frozen: the original is untouched


@pytest.mark.parametrize(
    "repo, tag, expected",
    [
        ("busybox", "1", "docker.io/library/busybox:1"),
        ("busybox", None, "docker.io/library/busybox:latest"),
        ("busybox", "", "docker.io/library/busybox:latest"),
        ("busybox:1.36", None, "docker.io/library/busybox:1.36"),
        ("busybox:1.36", "2", "docker.io/library/busybox:2"),
        ("localhost:5000/a", "t", "localhost:5000/a:t"),
        ("busybox", DIGEST, f"docker.io/library/busybox@{DIGEST}"),
        ("busybox:1", DIGEST, f"docker.io/library/busybox@{DIGEST}"),
        (f"busybox@{DIGEST}", None, f"docker.io/library/busybox@{DIGEST}"),
    ],
)
def test_parse_repo_tag(repo, tag, expected):
    assert str(parse_repo_tag(repo, tag)) == expected


@pytest.mark.parametrize(
    "repo, tag, message",
    [
        ("busybox", "bad tag", "invalid tag format"),
        ("busybox", "x" * 129, "invalid tag format"),
        ("Busybox", "1", "invalid reference format: repository name (library/Busybox) must be lowercase"),
        ("", "1", MISSING),
    ],
)
def test_parse_repo_tag_errors(repo, tag, message):
    with pytest.raises(InvalidArgument) as exc:
        parse_repo_tag(repo, tag)
    assert str(exc.value) == message


def test_parse_repo_tag_without_default():
    assert parse_repo_tag("busybox", None, default_tag=False).tag is None


@pytest.mark.parametrize(
    "text, full, short",
    [
        (HEX, True, True),
        (DIGEST, True, True),
        (HEX[:12], False, True),
        ("sha256:" + HEX[:12], False, True),
        ("abcd", False, True),
        ("abc", False, False),
        (HEX.upper(), False, False),
        (HEX + "0", False, False),
        ("busybox", False, False),
        ("sha512:" + HEX, False, False),
        (HEX + "\n", False, False),
    ],
)
def test_id_helpers(text, full, short):
    assert is_full_id(text) is full
    assert looks_like_id(text) is short


def test_constants():
    assert reference.DEFAULT_DOMAIN == "docker.io"
    assert reference.DEFAULT_TAG == "latest"
