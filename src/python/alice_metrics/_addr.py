"""ALICE_METRICS_ADDR: the forms alice-emit and libalice accept.

    127.0.0.1:8125   udp://host:port   [::1]:8125   ::1   host
    unix:///run/alice/metrics.sock     /run/alice/metrics.sock

A host without a port gets 8125; an IPv6 literal with a port needs the
brackets. Any other scheme (tcp://, http://) is refused: the daemon reads
datagrams only."""

DEFAULT_ADDR = "udp://127.0.0.1:8125"
DEFAULT_PORT = 8125
HOST_MAX = 255  # bytes of a host name or literal, without brackets
PATH_MAX = 107  # sizeof(sun_path) - 1


class Target(tuple):
    """("udp", host, port) or ("unix", path, None)."""

    __slots__ = ()

    def __new__(cls, kind, where, port=None):
        return tuple.__new__(cls, (kind, where, port))

    kind = property(lambda self: self[0])
    where = property(lambda self: self[1])
    port = property(lambda self: self[2])

    def __str__(self):
        kind, where, port = self
        if kind == "unix":
            return "unix://" + where
        if ":" in where:
            return "udp://[%s]:%d" % (where, port)
        return "udp://%s:%d" % (where, port)


def _port(text):
    if not (1 <= len(text) <= 5) or not text.isascii() or not text.isdigit():
        return None
    v = int(text)
    return v if 1 <= v <= 65535 else None


def _host(text):
    if not (1 <= len(text) <= HOST_MAX):
        return None
    for ch in text:
        # Whitespace, '/' or '@' mean a URL we do not speak; a bracket left
        # here means unbalanced brackets.
        if ch <= " " or ch in "/@[]" or ch >= "\x7f":
            return None
    return text


def parse(spec):
    """The Target of an address string; ValueError when it is malformed."""
    if not isinstance(spec, str) or not spec:
        raise ValueError("empty metrics address")
    bad = ValueError("malformed metrics address %r (forms: host:port, udp://host:port, "
                     "[v6]:port, unix:///path)" % (spec,))
    path = None
    if spec.startswith("unix://"):
        path = spec[7:]
    elif spec.startswith("/"):
        path = spec
    if path is not None:
        if not path or len(path.encode("utf-8", "surrogateescape")) > PATH_MAX or "\0" in path:
            raise bad
        return Target("unix", path)

    rest = spec
    if rest.startswith("udp://"):
        rest = rest[6:]
    elif "://" in rest:
        raise bad
    if rest.startswith("["):
        close = rest.find("]")
        if close < 0:
            raise bad
        host = _host(rest[1:close])
        after = rest[close + 1:]
        if host is None:
            raise bad
        if not after:
            return Target("udp", host, DEFAULT_PORT)
        port = _port(after[1:]) if after.startswith(":") else None
        if port is None:
            raise bad
        return Target("udp", host, port)
    colon = rest.find(":")
    if colon < 0 or ":" in rest[colon + 1:]:
        # No port, or a bare IPv6 literal (two colons or more, no brackets).
        host = _host(rest)
        if host is None:
            raise bad
        return Target("udp", host, DEFAULT_PORT)
    host, port = _host(rest[:colon]), _port(rest[colon + 1:])
    if host is None or port is None:
        raise bad
    return Target("udp", host, port)
