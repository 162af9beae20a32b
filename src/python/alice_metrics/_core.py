"""The line buffer, its sender, and the hot path of every metric call.

A metric call formats one StatsD line and appends it to `_buf`, a list
shared by every thread of the process (list.append is atomic: the call
takes no lock). The sender takes lines from the front of the list, packs
them into datagrams and sends each on a non-blocking socket:

- when the list holds `flush_lines` lines (checked by the call that
  appends: `len(_buf) >= _limit`);
- every `flush_interval` seconds, from a daemon thread started by the
  first line of the process;
- on flush(), at interpreter exit (atexit), before os.fork() in the
  parent, and at the end of a multiprocessing child (whose os._exit skips
  atexit: see _mp_child).

One lock (`_S.lock`) serializes the senders. A metric call takes it only
when its line fills the buffer, to send it, and then waits at most
SEND_WAIT for a send in progress in another thread. A datagram the kernel
does not take at once (daemon absent, socket buffer full) is dropped and
counted; nothing here raises into the caller.

Fork: the child starts with an empty buffer (the lines in it belong to the
parent, which sends them), its own socket, its own statistics and, at its
first line, its own thread; so no line is sent twice."""

import atexit
import errno
import logging
import os
import socket
import sys
import threading
import time

from . import _addr

_log = logging.getLogger("alice_metrics")

DEFAULT_INTERVAL = 1.0  # seconds between two flushes by the thread
DEFAULT_FLUSH_LINES = 256  # lines buffered before the call that adds one sends them
SEND_WAIT = 0.1  # seconds a full buffer waits for another thread that is sending
HARD_CAP_LINES = 1 << 17  # lines kept while the sender is held longer
UDP_LOOPBACK_DATAGRAM = 32768  # bytes; the loopback MTU is 64 KiB: one send per flush
UDP_NETWORK_DATAGRAM = 1432  # bytes; fits a 1500-byte path MTU (IPv6 + UDP headers)
UNIX_DATAGRAM = 32768  # bytes; the daemon reads up to 65,536
UDP_MAX, UNIX_MAX, MIN_DATAGRAM = 65507, 65536, 512
UNIX_SNDBUF = 1 << 20  # bytes in flight to a busy daemon (best effort)
RESOLVE_RETRY = 5.0  # seconds between two failed name resolutions

# An error that means "nobody listens there (now)": worth a reconnect or
# the next resolved address, as libalice does.
_ABSENT = frozenset((errno.ECONNREFUSED, errno.ENOENT, errno.ENOTCONN, errno.EDESTADDRREQ,
                     errno.ECONNRESET))
_DONTWAIT = getattr(socket, "MSG_DONTWAIT", 0)

# ---------------------------------------------------------------- hot path
_buf = []  # lines (str) not yet sent, oldest first; see GaugeLines for "\0"
_append = _buf.append
_limit = 1  # len(_buf) at which a call runs _full(); 1 until this process's first line


def _full():
    """Run by the metric call whose line made the buffer reach _limit."""
    global _limit
    s = _S
    if _limit != s.flush_lines:
        s.start()
        _limit = s.flush_lines
    if len(_buf) < _limit:
        return
    # Wait for a thread that is sending (the flusher): it needs the GIL
    # this wait gives up, and its sends do not block. A short timeout
    # all the same: the holder may be resolving a name, or this may be a
    # signal handler that interrupted a flush in this very thread.
    if not s.flush(True, SEND_WAIT) and len(_buf) >= HARD_CAP_LINES:
        # The sender has been held for long: bound the memory, count
        # what is dropped.
        n = len(_buf) - _limit
        del _buf[:n]
        s.count_drop(n, "buffer full")


def _invalid():
    """A NaN or infinite value: the daemon cannot take it."""
    _S.invalid += 1


# The value: an int within +-2**53 is written as it is ('%s' of an int is
# its digits, the cheap case); anything else through float(), whose '%s'
# is repr(), the shortest text that reads back to the same double. NaN
# and infinities are dropped. A float literal is cheaper than a global:
# 1.7976931348623157e308 is sys.float_info.max, 9007199254740992 2**53.

class CounterLines:
    """inc() of one counter series; _one is the line for 1, _fmt a
    %-template for any other value."""

    __slots__ = ("_one", "_fmt")

    def __init__(self, head, tail):
        self._one = head + "1" + tail
        self._fmt = head.replace("%", "%%") + "%s" + tail.replace("%", "%%")

    def inc(self, amount=1, exemplar=None):
        """Adds amount (>= 0; exemplar is accepted and ignored)."""
        if amount == 1:
            _append(self._one)
        elif type(amount) is int and 0 <= amount <= 9007199254740992:
            _append(self._fmt % amount)
        else:
            v = float(amount)
            if 0.0 <= v <= 1.7976931348623157e308:
                _append(self._fmt % v)
            elif v < 0.0:
                raise ValueError("Counters can only be incremented by non-negative amounts.")
            else:
                _invalid()
                return
        if len(_buf) >= _limit:
            _full()


class GaugeLines:
    """set(), inc() and dec() of one gauge series. On the wire a leading
    sign is a delta, so a negative value is set as 0 then a delta: one
    buffer item, the two lines joined by a NUL (which no line holds) so
    that the packer never puts them in two datagrams (the NUL is a line
    feed in the datagram)."""

    __slots__ = ("_fmt", "_plus", "_minus", "_zero", "_inc1", "_dec1")

    def __init__(self, head, tail):
        h, t = head.replace("%", "%%"), tail.replace("%", "%%")
        self._fmt = h + "%s" + t
        self._plus = h + "+%s" + t
        self._minus = h + "-%s" + t
        self._zero = head + "0" + tail
        self._inc1 = head + "+1" + tail
        self._dec1 = head + "-1" + tail

    def set(self, value):
        """Sets the gauge to value."""
        if type(value) is int and 0 <= value <= 9007199254740992:
            _append(self._fmt % value)
        else:
            v = float(value)
            if 0.0 < v <= 1.7976931348623157e308:
                _append(self._fmt % v)
            elif v == 0.0:
                _append(self._zero)
            elif -1.7976931348623157e308 <= v < 0.0:
                _append(self._zero + "\0" + self._fmt % v)
            else:
                _invalid()
                return
        if len(_buf) >= _limit:
            _full()

    def inc(self, amount=1):
        """Adds amount (any sign)."""
        if amount == 1:
            _append(self._inc1)
        elif type(amount) is int and -9007199254740992 <= amount <= 9007199254740992:
            _append((self._plus if amount >= 0 else self._fmt) % amount)
        else:
            v = float(amount)
            if 0.0 <= v <= 1.7976931348623157e308:
                _append(self._plus % (v + 0.0))  # + 0.0 turns -0.0 into 0.0
            elif -1.7976931348623157e308 <= v < 0.0:
                _append(self._fmt % v)
            else:
                _invalid()
                return
        if len(_buf) >= _limit:
            _full()

    def dec(self, amount=1):
        """Subtracts amount (any sign)."""
        if amount == 1:
            _append(self._dec1)
        elif type(amount) is int and -9007199254740992 <= amount <= 9007199254740992:
            _append((self._minus % amount) if amount >= 0 else (self._plus % -amount))
        else:
            v = float(amount)
            if 0.0 <= v <= 1.7976931348623157e308:
                _append(self._minus % (v + 0.0))
            elif -1.7976931348623157e308 <= v < 0.0:
                _append(self._plus % -v)
            else:
                _invalid()
                return
        if len(_buf) >= _limit:
            _full()


class ObserveLines:
    """observe() of one histogram or summary series (`|h`: the value as is,
    seconds for durations)."""

    __slots__ = ("_fmt",)

    def __init__(self, head, tail):
        self._fmt = head.replace("%", "%%") + "%s" + tail.replace("%", "%%")

    def observe(self, amount, exemplar=None):
        """Observes amount (exemplar is accepted and ignored)."""
        if type(amount) is int and -9007199254740992 <= amount <= 9007199254740992:
            _append(self._fmt % amount)
        else:
            v = float(amount)
            if -1.7976931348623157e308 <= v <= 1.7976931348623157e308:
                _append(self._fmt % v)
            else:
                _invalid()
                return
        if len(_buf) >= _limit:
            _full()


# ---------------------------------------------------------------- sender
def _errname(err):
    return errno.errorcode.get(err, str(err)) if isinstance(err, int) else str(err)


def _is_loopback(host):
    return host.startswith("127.") or host in ("::1", "localhost") or host.startswith("::ffff:127.")


class _Sender:
    """The process's target, socket, thread and statistics. Every field
    below `lock` is read and written with `lock` held, except the
    statistics' plain increments."""

    def __init__(self):
        self.lock = threading.Lock()
        self.pid = os.getpid()
        self.target = None  # _addr.Target; None until the first send reads the environment
        self.target_error = None  # why there is no target (a bad ALICE_METRICS_ADDR)
        self.flush_interval = DEFAULT_INTERVAL
        self.flush_lines = DEFAULT_FLUSH_LINES
        self.max_datagram = None  # None: by transport and address
        self.sock = None
        self.udp = True
        self.addrs = []  # resolved (family, sockaddr), at most 4
        self.cur = 0
        self.resolve_after = 0.0
        self.max = 0  # bytes per datagram of the open socket
        self.thread = None
        self.gen = 0  # a thread runs while its generation is current
        self.functions = {}  # id(gauge) -> (gauge, f): Gauge.set_function
        self.forking = False  # the lock is held across a fork
        self.reset_stats()

    def reset_stats(self):
        self.datagrams_sent = self.datagrams_dropped = 0
        self.lines_sent = self.lines_dropped = 0
        self.invalid = self.function_errors = 0
        self.last_error = None

    def count_drop(self, nlines, err):
        self.datagrams_dropped += 1
        self.lines_dropped += nlines
        self.last_error = _errname(err)

    # -- the thread
    def start(self):
        """Starts the flusher thread of this process if it has none."""
        with self.lock:
            if self.thread is not None or self.flush_interval <= 0:
                return
            t = threading.Thread(target=self._run, args=(self.gen,), name="alice_metrics-flush",
                                 daemon=True)
            try:
                t.start()
            except RuntimeError:  # interpreter shutdown: atexit sends the rest
                return
            self.thread = t

    def _run(self, gen):
        while True:
            time.sleep(self.flush_interval)
            if gen != self.gen:
                return
            if self.functions:
                self._sample_functions()
            self.flush()

    def _sample_functions(self):
        for gauge, f in list(self.functions.values()):
            try:
                gauge.set(f())
            except Exception:  # noqa: BLE001 - the user's function, never our caller
                self.function_errors += 1

    # -- sending
    def flush(self, block=True, timeout=-1):
        """Sends every buffered line; False when the lock was not had."""
        if not self.lock.acquire(block, timeout):
            return False
        try:
            self.flush_locked()
        finally:
            self.lock.release()
        return True

    def flush_locked(self):
        n = len(_buf)
        if not n:
            return
        items = _buf[:n]
        del _buf[:n]
        try:
            self._send_items(items)
        except Exception as e:  # noqa: BLE001 - a send failure never raises
            self.count_drop(sum(it.count("\0") + 1 for it in items), repr(e))

    def _send_items(self, items):
        """Packs whole lines into datagrams of at most self.max bytes (a
        line longer than that goes alone) and sends them."""
        if self.sock is None:
            self._open()
        limit = self.max or UDP_LOOPBACK_DATAGRAM
        data = "\n".join(items).encode("utf-8")
        start, end = 0, len(data)
        while start < end:
            stop = start + limit
            if stop >= end:
                cut = end
            else:
                cut = data.rfind(b"\n", start, stop + 1)
                if cut <= start:
                    cut = data.find(b"\n", stop)
                    if cut < 0:
                        cut = end
            chunk = data[start:cut]
            if b"\0" in chunk:
                chunk = chunk.replace(b"\0", b"\n")
            self._send(chunk)
            start = cut + 1

    def _send(self, data):
        nlines = data.count(b"\n") + 1
        if self.sock is None and not self._open():
            self.count_drop(nlines, self.last_error)
            return
        if len(data) > (UDP_MAX if self.udp else UNIX_MAX):
            self.count_drop(nlines, errno.EMSGSIZE)
            return
        err = self._send_once(data)
        if err in _ABSENT:
            if not self.udp:
                # The daemon restarted (a new socket at the path) or is gone.
                self._close()
                err = self._send_once(data) if self._open() else (err or errno.ENOTCONN)
            else:
                # Refused: the other resolved addresses ("localhost" is ::1
                # and 127.0.0.1; the daemon may listen on one of them).
                for _ in range(len(self.addrs) - 1):
                    self._close()
                    self.cur = (self.cur + 1) % len(self.addrs)
                    if self._open():
                        err = self._send_once(data)
                        if err not in _ABSENT:
                            break
        if err:
            self.count_drop(nlines, err)
        else:
            self.datagrams_sent += 1
            self.lines_sent += nlines

    def _send_once(self, data):
        try:
            self.sock.send(data, _DONTWAIT)
        except OSError as e:
            return e.errno or errno.EIO
        if self.udp:
            # On loopback the "port unreachable" answer is processed before
            # send() returns: reading it now charges the refusal to this
            # datagram instead of failing the next one.
            try:
                return self.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            except OSError as e:
                return e.errno or errno.EIO
        return 0

    def _load_env(self):
        spec = os.environ.get("ALICE_METRICS_ADDR") or _addr.DEFAULT_ADDR
        try:
            self.target = _addr.parse(spec)
        except ValueError as e:
            self.target_error = "ALICE_METRICS_ADDR: %s" % e
            _log.warning("alice_metrics: %s; metrics are dropped", self.target_error)

    def _open(self):
        """Opens and connects the socket: True, or False with last_error set."""
        if self.target is None:
            if self.target_error is None:
                self._load_env()
            if self.target is None:
                self.last_error = self.target_error
                return False
        kind, where, port = self.target
        if kind == "unix":
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            sock.setblocking(False)
            try:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, UNIX_SNDBUF)
            except OSError:
                pass
            try:
                sock.connect(where)
            except OSError as e:
                sock.close()
                self.last_error = _errname(e.errno)
                return False
            self.sock, self.udp = sock, False
            self.max = self.max_datagram or UNIX_DATAGRAM
            return True
        if not self.addrs:
            now = time.monotonic()
            if now < self.resolve_after:
                self.last_error = "EAI_AGAIN"
                return False
            try:
                infos = socket.getaddrinfo(where, port, 0, socket.SOCK_DGRAM, socket.IPPROTO_UDP,
                                           socket.AI_NUMERICSERV)
            except (OSError, UnicodeError) as e:
                self.resolve_after = now + RESOLVE_RETRY
                self.last_error = "cannot resolve %s: %s" % (where, e)
                return False
            self.addrs = [(fam, sa) for fam, _, _, _, sa in infos
                          if fam in (socket.AF_INET, socket.AF_INET6)][:4]
            self.cur = 0
            if not self.addrs:
                self.resolve_after = now + RESOLVE_RETRY
                self.last_error = "EADDRNOTAVAIL"
                return False
        fam, sa = self.addrs[self.cur]
        sock = socket.socket(fam, socket.SOCK_DGRAM)
        sock.setblocking(False)
        try:
            # Connected: send() is cheaper, and the kernel reports an absent
            # daemon (ECONNREFUSED) instead of dropping silently.
            sock.connect(sa)
        except OSError as e:
            sock.close()
            self.last_error = _errname(e.errno)
            return False
        self.sock, self.udp = sock, True
        self.max = self.max_datagram or (
            UDP_LOOPBACK_DATAGRAM if _is_loopback(sa[0]) else UDP_NETWORK_DATAGRAM)
        return True

    def _close(self):
        if self.sock is not None:
            try:
                self.sock.close()
            except OSError:
                pass
            self.sock = None

    # -- process events
    def before_fork(self):
        self.forking = self.lock.acquire(True, 2.0)
        if self.forking:
            try:
                self.flush_locked()
            except Exception:  # noqa: BLE001 - never fail a fork
                pass
        _mp_hook()

    def after_fork_parent(self):
        if self.forking:
            self.lock.release()

    def after_fork_child(self):
        global _limit
        self.lock = threading.Lock()
        del _buf[:]
        self._close()
        self.thread = None
        self.gen += 1
        self.pid = os.getpid()
        self.reset_stats()
        _limit = 1
        if self.functions:
            self.start()


_S = _Sender()


def _mp_hook():
    """multiprocessing's fork and forkserver children end with os._exit(),
    which skips atexit, after running multiprocessing's own exit
    finalizers: register one there in every such child. Done once
    multiprocessing.util is loaded (it is, before its first fork)."""
    global _mp_hooked
    if _mp_hooked:
        return
    util = sys.modules.get("multiprocessing.util")
    if util is None:
        return
    _mp_hooked = True
    util.register_after_fork(_S, _mp_child)


def _mp_child(_sender):
    import multiprocessing.util as util
    # A low priority: after the finalizers of pools and queues, whose
    # shutdown may still emit lines.
    util.Finalize(None, flush, exitpriority=-100)


_mp_hooked = False


def _at_exit():
    _S.flush(True, 2.0)


atexit.register(_at_exit)
if hasattr(os, "register_at_fork"):
    os.register_at_fork(before=_S.before_fork, after_in_parent=_S.after_fork_parent,
                        after_in_child=_S.after_fork_child)
_mp_hook()


def register_function(gauge, f):
    """Gauge.set_function: the thread sets gauge to f() every interval."""
    _S.functions[id(gauge)] = (gauge, f)
    _S.start()


# ---------------------------------------------------------------- public
def flush(timeout=2.0):
    """Sends every buffered line now (a non-blocking send per datagram).
    Waits at most `timeout` seconds for another thread that is sending;
    returns False if it had to give up. Never raises for a send failure:
    see stats()."""
    return _S.flush(True, -1 if timeout is None else timeout)


def stats():
    """This process's sender statistics, as a dict:

    lines_sent, datagrams_sent: handed to the kernel;
    lines_dropped, datagrams_dropped: refused (daemon absent, socket buffer
        full, no target), counted, never retried;
    invalid: values dropped before sending (NaN or infinite);
    function_errors: Gauge.set_function callbacks that raised;
    lines_buffered: waiting for the next flush;
    last_error: the last reason for a drop (errno name or message), or None;
    target: the address sent to (None before the first send);
    max_datagram: bytes per datagram of the open socket (0 before)."""
    s = _S
    return {
        "lines_sent": s.lines_sent,
        "datagrams_sent": s.datagrams_sent,
        "lines_dropped": s.lines_dropped,
        "datagrams_dropped": s.datagrams_dropped,
        "invalid": s.invalid,
        "function_errors": s.function_errors,
        "lines_buffered": sum(it.count("\0") + 1 for it in list(_buf)),
        "last_error": s.last_error,
        "target": str(s.target) if s.target is not None else None,
        "max_datagram": s.max,
    }


def configure(addr=None, flush_interval=None, flush_lines=None, max_datagram=None,
              reset_stats=False):
    """Changes the sender of this process; None leaves a setting as it is.

    addr: a target in ALICE_METRICS_ADDR's forms (default: that variable,
        else udp://127.0.0.1:8125); ValueError when malformed.
    flush_interval: seconds between two sends by the thread (default 1);
        0: no thread (lines leave when flush_lines are buffered, on flush(),
        at exit and before a fork).
    flush_lines: lines buffered before a metric call sends them (default 256).
    max_datagram: bytes per datagram (default 32768 for UDP to a loopback
        address, 1432 for UDP elsewhere, 32768 for a Unix socket; 512 to
        65507 (UDP) or 65536 (Unix)).
    reset_stats: zero the statistics.

    Lines buffered before the call are sent to the previous target first."""
    global _limit
    target = _addr.parse(addr) if addr is not None else None
    if flush_interval is not None:
        flush_interval = float(flush_interval)
        if not 0.0 <= flush_interval <= 86400.0:
            raise ValueError("flush_interval: 0 to 86400 seconds, not %r" % flush_interval)
    if flush_lines is not None and (not isinstance(flush_lines, int) or flush_lines < 1):
        raise ValueError("flush_lines: a positive integer, not %r" % (flush_lines,))
    if max_datagram is not None:
        kind = (target or _S.target or _addr.Target("udp", "", 0)).kind
        top = UNIX_MAX if kind == "unix" else UDP_MAX
        if not isinstance(max_datagram, int) or not MIN_DATAGRAM <= max_datagram <= top:
            raise ValueError("max_datagram: %d to %d bytes, not %r" % (MIN_DATAGRAM, top,
                                                                       max_datagram))
    s = _S
    restart = False
    with s.lock:
        s.flush_locked()
        if target is not None:
            s._close()
            s.target, s.target_error, s.addrs, s.cur, s.resolve_after = target, None, [], 0, 0.0
        if max_datagram is not None:
            s.max_datagram = max_datagram
            if s.sock is not None:
                s.max = max_datagram
        if flush_lines is not None:
            s.flush_lines = flush_lines
            _limit = 1  # the next line takes the new value (and starts the thread)
        if flush_interval is not None and flush_interval != s.flush_interval:
            restart = s.thread is not None
            s.flush_interval = flush_interval
            s.gen += 1
            s.thread = None
            _limit = 1
        if reset_stats:
            s.reset_stats()
    if restart:
        s.start()
