#!/usr/bin/env python3
"""An independent client of the swarm wire protocol, written from docs/protocol.md alone.

It starts real nodes (dhtnode, logfilesnode, queuenode) from --bin-dir on 127.0.0.1 with ports
the OS picks, each with its own temporary data and log directories, speaks the protocol to them
over TCP (and TLS), and checks every reply field by field against what docs/protocol.md
promises: the handshake (with and without authentication, in clear and inside TLS, with and
without client certificates), framing and protocol errors, the requests every node answers,
every request of the three node kinds with their documented error statuses, the limits of §2.3
and of each kind, a client that never reads (§2.2), a second Redistribute (§6.6), and writes on
a full disk (§6.10, §7.4: small tmpfs file systems it mounts, so it runs as root; see
SmallDisk for what it does without that).

    python3 scripts/conformance/protocol_client.py --bin-dir target/release

Exit status 0 only when every check passed; each failure is printed with the section of
docs/protocol.md it contradicts. Python 3 standard library only (LZ4 block format, CRC32 and
HMAC-SHA512 done here or by the standard library); the TLS part makes a throwaway certificate
with the `openssl` program.
"""

import argparse
import contextlib
import hashlib
import hmac
import os
import re
import shutil
import signal
import socket
import ssl
import struct
import subprocess
import sys
import tempfile
import time
import zlib

# ---------------------------------------------------------------------------------------------
# Results

FAILURES = []
PASSED = [0]
VERBOSE = [False]


def check(cond, section, what):
    """Records one check: `section` is the doc section the node contradicts when `cond` fails."""
    if cond:
        PASSED[0] += 1
        if VERBOSE[0]:
            print(f"ok   {section}: {what}")
    else:
        FAILURES.append((section, what))
        print(f"FAIL {section}: {what}")
    return cond


def check_eq(got, want, section, what):
    return check(got == want, section, f"{what}: got {got!r}, want {want!r}")


# ---------------------------------------------------------------------------------------------
# Protocol constants (§1-§3)

MAGIC = b"SWRM"
OK_MAGIC = b"SWOK"
VERSION = 1
KIND_DHT, KIND_LOGFILES, KIND_QUEUE = 1, 2, 3

T_REQUEST, T_REPLY, T_ITEM, T_CONTROL = 1, 2, 3, 4
CTL_CREDIT, CTL_STOP = 1, 2

ST = {
    "Ok": 0, "NotFound": 1, "WrongNode": 10, "BadChannelName": 11, "EmptyValue": 12,
    "ValueTooBig": 13, "OutOfMemory": 14, "ChannelFull": 15, "NotPermitted": 16,
    "BadRequest": 17, "UnsupportedRequest": 18, "UnsupportedVersion": 19, "InternalError": 20,
    "UpdateConflict": 21, "FrameTooLarge": 22, "TooManyRequests": 23, "ShuttingDown": 24,
    "Busy": 25, "NotDurable": 26, "NotReady": 27,
}
ST_NAME = {v: k for k, v in ST.items()}

HEADER = struct.Struct("<IBBHQ")
MAX_FRAME = 16 * 1024 * 1024
FULL_MIN, FULL_MAX = 0, 0xFFFFFFFFFFFFFFFF


def str8(s):
    b = s.encode() if isinstance(s, str) else s
    return bytes([len(b)]) + b


def u8(v):
    return struct.pack("<B", v)


def u16(v):
    return struct.pack("<H", v)


def u32(v):
    return struct.pack("<I", v)


def u64(v):
    return struct.pack("<Q", v)


def fnv1a(data):
    """§6.1: 64-bit FNV-1a, the value_hash of Update."""
    h = 0xCBF29CE484222325
    for b in data:
        h ^= b
        h = (h * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return h


def reverse_bits(k):
    return int(f"{k:064b}"[::-1], 2)


class Reader:
    """Decodes a reply body field by field; `done()` says whether every byte was used."""

    def __init__(self, data):
        self.data = bytes(data)
        self.pos = 0

    def take(self, n):
        if self.pos + n > len(self.data):
            raise ValueError(f"body cut short: need {n} bytes at {self.pos} of {len(self.data)}")
        b = self.data[self.pos:self.pos + n]
        self.pos += n
        return b

    def u8(self):
        return self.take(1)[0]

    def u16(self):
        return struct.unpack("<H", self.take(2))[0]

    def u32(self):
        return struct.unpack("<I", self.take(4))[0]

    def u64(self):
        return struct.unpack("<Q", self.take(8))[0]

    def str8(self):
        return self.take(self.u8()).decode()

    def bytes_(self):
        return self.take(self.u32())

    def rest(self):
        return self.take(len(self.data) - self.pos)

    def done(self):
        return self.pos == len(self.data)


# ---------------------------------------------------------------------------------------------
# LZ4 block format and batches (§4)


def lz4_compress(data):
    """A valid LZ4 block of literals only (the format allows a block that is one sequence)."""
    n = len(data)
    out = bytearray()
    if n < 15:
        out.append(n << 4)
    else:
        out.append(0xF0)
        rest = n - 15
        while rest >= 255:
            out.append(255)
            rest -= 255
        out.append(rest)
    out += data
    return bytes(out)


def lz4_decompress(src, size):
    dst = bytearray()
    i = 0
    n = len(src)
    while i < n:
        token = src[i]
        i += 1
        lit = token >> 4
        if lit == 15:
            while True:
                b = src[i]
                i += 1
                lit += b
                if b != 255:
                    break
        dst += src[i:i + lit]
        i += lit
        if i >= n:
            break
        off = src[i] | (src[i + 1] << 8)
        i += 2
        ml = token & 15
        if ml == 15:
            while True:
                b = src[i]
                i += 1
                ml += b
                if b != 255:
                    break
        ml += 4
        if off == 0 or off > len(dst):
            raise ValueError("lz4: bad offset")
        start = len(dst) - off
        while ml > 0:
            chunk = min(ml, off)
            dst += dst[start:start + chunk]
            start += chunk
            ml -= chunk
        if len(dst) > size:
            raise ValueError("lz4: output longer than announced")
    if len(dst) != size:
        raise ValueError(f"lz4: decompressed {len(dst)} bytes, header says {size}")
    return bytes(dst)


def encode_records(records):
    return b"".join(u64(k) + u32(len(v)) + v for k, v in records)


def make_batch(records, compress=True):
    raw = encode_records(records)
    head = u32(len(raw)) + u32(len(records)) + u32(zlib.crc32(raw) & 0xFFFFFFFF)
    if not raw:
        return head
    return head + (lz4_compress(raw) if compress else raw)


def decode_records(raw, count):
    r = Reader(raw)
    out = []
    for _ in range(count):
        k = r.u64()
        v = r.take(r.u32())
        out.append((k, v))
    if not r.done():
        raise ValueError("records end before the batch does")
    return out


def parse_batch(body, compressed=True):
    r = Reader(body)
    size, count, crc = r.u32(), r.u32(), r.u32()
    rest = r.rest()
    raw = lz4_decompress(rest, size) if compressed else rest
    if len(raw) != size:
        raise ValueError("uncompressed batch: body is not 12 + U bytes")
    if zlib.crc32(raw) & 0xFFFFFFFF != crc:
        raise ValueError("batch CRC mismatch")
    return decode_records(raw, count)


# ---------------------------------------------------------------------------------------------
# Nodes


class Node:
    """One node process on 127.0.0.1:0 with its own directories, its address read from root.log."""

    def __init__(self, bin_dir, binary, kind, tmp, name, config=None, extra=(), preexec=None):
        self.kind = kind
        self.dir = os.path.join(tmp, name)
        # The directory may exist already: a SmallDisk mounted at its data/.
        os.makedirs(self.dir, exist_ok=True)
        self.log = os.path.join(self.dir, "log")
        args = [os.path.join(os.path.abspath(bin_dir), binary), "--listen", "127.0.0.1:0",
                "--data-dir", os.path.join(self.dir, "data"), "--log-dir", self.log]
        if config is not None:
            path = os.path.join(self.dir, "node.toml")
            with open(path, "w") as f:
                f.write(config)
            args += ["--config", path]
        args += list(extra)
        self.stderr = open(os.path.join(self.dir, "stderr"), "w")
        self.proc = subprocess.Popen(args, cwd=self.dir, stdout=self.stderr,
                                     stderr=subprocess.STDOUT, preexec_fn=preexec)
        self.addr = self._wait_addr()

    def _wait_addr(self):
        deadline = time.time() + 20
        root = os.path.join(self.log, "root.log")
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.dir}: node exited with {self.proc.returncode}")
            try:
                with open(root) as f:
                    m = re.search(r"listening on (\S+)", f.read())
                if m:
                    host, port = m.group(1).rsplit(":", 1)
                    return host, int(port)
            except FileNotFoundError:
                pass
            time.sleep(0.05)
        raise RuntimeError(f"{self.dir}: no 'listening on' in root.log")

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.stderr.close()


class Closed(Exception):
    pass


class Conn:
    """One connection: the handshake, then frames."""

    def __init__(self, node_or_addr, kind=0, name=b"", key=None, handshake=True, tls=None,
                 rcvbuf=None):
        addr = node_or_addr.addr if isinstance(node_or_addr, Node) else node_or_addr
        if rcvbuf is None:
            self.sock = socket.create_connection(addr, timeout=10)
        else:  # a small receive window, set before the connection opens
            self.sock = socket.socket()
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
            self.sock.settimeout(10)
            self.sock.connect(addr)
        if tls is not None:
            self.sock = tls.wrap_socket(self.sock, server_hostname=addr[0])
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = bytearray()
        self.next_id = 1
        self.pending = []
        self.hello = self.read_exact(40)
        self.result = None
        if handshake:
            self.result = self.do_hello(kind, name, key)

    def server_hello(self):
        magic, version, kind, verdict = struct.unpack("<4sHBB", self.hello[:8])
        return magic, version, kind, verdict, self.hello[8:]

    def do_hello(self, kind, name, key, version=VERSION, magic=MAGIC):
        nonce = self.hello[8:40]
        if key is not None:
            msg = b"swarm-auth-v1" + nonce + bytes([len(name)]) + name
            proof = hmac.new(key, msg, hashlib.sha512).digest()
        else:
            proof = bytes(64)
        self.sock.sendall(magic + u16(version) + u8(kind) + u8(len(name)) + name + proof)
        return struct.unpack("<4sBBH", self.read_exact(8))

    def read_exact(self, n):
        while len(self.buf) < n:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise Closed("connection closed")
            self.buf += chunk
        out = bytes(self.buf[:n])
        del self.buf[:n]
        return out

    def send_frame(self, ftype, code, rid, body=b"", flags=0, length=None):
        n = len(body) if length is None else length
        self.sock.sendall(HEADER.pack(n, ftype, code, flags, rid) + body)

    def recv_frame(self, timeout=10):
        if self.pending:
            return self.pending.pop(0)
        self.sock.settimeout(timeout)
        head = self.read_exact(16)
        n, ftype, code, flags, rid = HEADER.unpack(head)
        body = self.read_exact(n)
        return ftype, code, flags, rid, body

    def new_id(self):
        rid = self.next_id
        self.next_id += 1
        return rid

    def send(self, code, body=b""):
        rid = self.new_id()
        self.send_frame(T_REQUEST, code, rid, body)
        return rid

    def reply_for(self, rid, timeout=10):
        """The Reply of `rid`; frames of other ids are kept for later."""
        kept = []
        try:
            while True:
                f = self.recv_frame(timeout)
                if f[3] == rid and f[0] == T_REPLY:
                    return f[1], f[4]
                kept.append(f)
        finally:
            self.pending = kept + self.pending

    def call(self, code, body=b""):
        return self.reply_for(self.send(code, body))

    def credit(self, rid, n):
        self.send_frame(T_CONTROL, CTL_CREDIT, rid, u32(n))

    def stop(self, rid):
        self.send_frame(T_CONTROL, CTL_STOP, rid)

    def stream(self, code, body, credit=1 << 20, timeout=10):
        """Runs a stream to its Reply, granting credit; returns ([(item code, body)], status, body)."""
        rid = self.send(code, body)
        if credit:
            self.credit(rid, credit)
        items = []
        while True:
            ftype, c, _, fid, fbody = self.recv_frame(timeout)
            check(fid == rid, "§2", f"frame for id {fid} while only stream {rid} runs")
            if ftype == T_ITEM:
                items.append((c, fbody))
            elif ftype == T_REPLY:
                return items, c, fbody
            else:
                check(False, "§2", f"frame type {ftype} from the node")

    def items_until(self, rid, count, timeout=5):
        """Reads frames until `count` Items of `rid` came; returns them (and any Reply seen)."""
        items = []
        kept = []
        try:
            while len(items) < count:
                ftype, c, _, fid, fbody = self.recv_frame(timeout)
                if fid != rid:
                    kept.append((ftype, c, 0, fid, fbody))
                    continue
                if ftype == T_REPLY:
                    return items, (c, fbody)
                items.append((c, fbody))
            return items, None
        finally:
            self.pending = kept + self.pending

    def quiet(self, wait=0.3):
        """True when the node sends nothing within `wait` seconds."""
        self.sock.settimeout(wait)
        try:
            chunk = self.sock.recv(65536)
        except socket.timeout:
            return True
        if not chunk:
            return True
        self.buf += chunk
        return False

    def closed_by_node(self, timeout=5):
        self.sock.settimeout(timeout)
        try:
            while True:
                chunk = self.sock.recv(65536)
                if not chunk:
                    return True
        except socket.timeout:
            return False
        except ConnectionResetError:
            return True

    def close(self):
        self.sock.close()


def status_is(got, want, section, what):
    st, body = got
    msg = ""
    if st not in (0, 1):
        msg = f" ({body[:200].decode(errors='replace')})"
        try:
            body.decode()
            utf8 = True
        except UnicodeDecodeError:
            utf8 = False
        check(utf8 and len(body) <= 1024, "§2.1",
              f"{what}: an error body is a UTF-8 message of at most 1 KiB ({len(body)} bytes)")
    return check(st == ST[want], section,
                 f"{what}: status {ST_NAME.get(st, st)}{msg}, want {want}")


def ok_body(got, section, what):
    status_is(got, "Ok", section, what)
    return Reader(got[1])


# ---------------------------------------------------------------------------------------------
# §1: the handshake


def test_handshake(node, kind, other_kind):
    c = Conn(node, handshake=False)
    magic, version, k, verdict, nonce = c.server_hello()
    check_eq(magic, MAGIC, "§1.1", "ServerHello magic")
    check_eq(version, 1, "§1.1", "ServerHello version")
    check_eq(k, kind, "§1.1", "ServerHello node kind")
    check_eq(verdict, 0, "§1.1", "verdict without authentication")
    check_eq(nonce, bytes(32), "§1.1", "nonce without authentication")
    res = c.do_hello(kind, b"conformance-client", None)
    check_eq(res, (OK_MAGIC, 0, 1, 0), "§1.3", "HandshakeResult (Accepted, admin flag)")
    ok_body(c.call(1), "§5", "GetVersion after a named anonymous hello")
    c.close()
    for label, args, want in [
        ("a different version", dict(version=2), 2),
        ("the wrong kind", dict(kind=other_kind), 3),
        ("bad magic", dict(magic=b"XXXX"), 7),
        ("a name with ':'", dict(name=b"a:b"), 7),
        ("a name of 101 bytes", dict(name=b"n" * 101), 7),
    ]:
        c = Conn(node, handshake=False)
        a = dict(kind=kind, name=b"", key=None)
        v = a.pop("version", VERSION)
        m = MAGIC
        if "version" in args:
            v = args["version"]
        if "magic" in args:
            m = args["magic"]
        a.update({x: args[x] for x in ("kind", "name") if x in args})
        try:
            res = c.do_hello(a["kind"], a["name"], None, version=v, magic=m)
            check_eq(res[:2], (OK_MAGIC, want), "§1.3", f"HandshakeResult for {label}")
            check(c.closed_by_node(), "§1.3", f"the node closes after refusing {label}")
        except Closed:
            check(False, "§1.3", f"{label}: the node closed without a HandshakeResult")
        c.close()
    c = Conn(node, kind=0)
    check_eq(c.result[:2], (OK_MAGIC, 0), "§1.2", "expected kind 0 (any) is accepted")
    c.close()
    c = Conn(node, handshake=False)
    c.sock.sendall(MAGIC + u16(VERSION) + u8(4) + u8(0) + bytes(64))
    check_eq(struct.unpack("<4sBBH", c.read_exact(8))[:2], (OK_MAGIC, 7), "§1.2",
             "an expected kind that is no node kind (4): BadHello")
    c.close()
    c = Conn(node, handshake=False)
    c.sock.sendall(MAGIC + u16(VERSION) + u8(kind) + u8(0) + b"\x01" * 64)
    check_eq(struct.unpack("<4sBBH", c.read_exact(8))[:2], (OK_MAGIC, 0), "§1.2",
             "a non-zero proof to a node that did not ask for one is ignored")
    c.close()


def test_auth(bin_dir, tmp):
    key_admin = bytes(range(32))
    key_user = bytes(range(100, 132))
    cred = os.path.join(tmp, "credentials")
    with open(cred, "w") as f:
        f.write("# clients\n\nadmin:" + key_admin.hex() + "\nuser:" + key_user.hex() + "\n")
    os.chmod(cred, 0o600)
    node = Node(bin_dir, "dhtnode", KIND_DHT, tmp, "dht-auth",
                config=f'[auth]\ncredentials_file = "{cred}"\nadmins = ["admin"]\n')
    try:
        c = Conn(node, handshake=False)
        _, _, _, verdict, nonce = c.server_hello()
        check_eq(verdict, 1, "§1.1", "verdict AuthRequired with a credentials file")
        check(nonce != bytes(32), "§1.1", "a non-zero nonce under AuthRequired")
        check_eq(c.do_hello(KIND_DHT, b"admin", key_admin), (OK_MAGIC, 0, 1, 0), "§1.3",
                 "admin accepted with the admin flag")
        ok_body(c.call(24, str8("ch")), "§1.4", "RemoveChannel by an admin")
        c.close()
        c2 = Conn(node, handshake=False)
        check(c2.hello[8:] != nonce, "§1.1", "a fresh nonce per connection")
        check_eq(c2.do_hello(KIND_DHT, b"user", key_user), (OK_MAGIC, 0, 0, 0), "§1.3",
                 "a non-admin client accepted without the admin flag")
        status_is(c2.call(24, str8("ch")), "NotPermitted", "§1.4", "RemoveChannel by a non-admin")
        status_is(c2.call(24, b"\xff garbage"), "NotPermitted", "§1.4",
                  "an admin request with a bad body from a non-admin (permission first)")
        status_is(c2.call(16, str8("ch") + u64(1) + b"v"), "Ok", "§1.4", "Put by a non-admin")
        for code, name in ((29, "Redistribute"), (30, "RedistBatch"), (31, "RedistCommit"),
                           (37, "SetReady"), (38, "RedistBatchVersion")):
            status_is(c2.call(code, b""), "NotPermitted", "§6.2", f"{name} (admin) by a non-admin")
        r = ok_body(c2.call(39, str8("ch") + make_batch([(2, u64(1) + b"v")])), "§6.14",
                    "PutBatchVersion (not admin) by a non-admin")
        rid = c2.send(36, str8("ch") + u8(0) + u32(0))
        c2.stop(rid)
        status_is(c2.reply_for(rid), "Ok", "§6.13", "Mirror (not admin) by a non-admin")
        c2.close()
        for label, name, key in [("a wrong key", b"user", key_admin),
                                 ("an unknown name", b"nobody", key_user),
                                 ("an anonymous client", b"", None)]:
            c = Conn(node, handshake=False)
            res = c.do_hello(KIND_DHT, name, key if key else None)
            check_eq(res[:2], (OK_MAGIC, 6), "§1.4", f"AuthFailed for {label}")
            check(c.closed_by_node(), "§1.3", f"the node closes after AuthFailed ({label})")
            c.close()
    finally:
        node.stop()
    for binary, kind, code in (("logfilesnode", KIND_LOGFILES, 55), ("queuenode", KIND_QUEUE, 85)):
        node = Node(bin_dir, binary, kind, tmp, f"{binary}-auth",
                    config=f'[auth]\ncredentials_file = "{cred}"\n')
        try:
            c = Conn(node, kind=kind, name=b"user", key=key_user)
            check_eq(c.result, (OK_MAGIC, 0, 0, 0), "§1.3", f"{binary}: a non-admin accepted")
            status_is(c.call(code, str8("ch")), "NotPermitted", "§1.4",
                      f"{binary}: RemoveChannel by a non-admin")
            c.close()
            c = Conn(node, kind=kind, name=b"admin", key=key_admin)
            check_eq(c.result, (OK_MAGIC, 0, 1, 0), "§1.3", f"{binary}: the admin accepted")
            status_is(c.call(code, str8("ch")), "Ok", "§1.4", f"{binary}: RemoveChannel by the admin")
            c.close()
        finally:
            node.stop()


# ---------------------------------------------------------------------------------------------
# §2, §5: frames and the requests every node answers


def test_common(node, kind, foreign_code):
    c = Conn(node, kind=kind)
    r = ok_body(c.call(1), "§5", "GetVersion")
    check_eq(r.u16(), 1, "§5", "GetVersion protocol version")
    check_eq(r.u8(), kind, "§5", "GetVersion node kind")
    sv = r.str8()
    check(re.fullmatch(r"\d+\.\d+\.\d+.*", sv) is not None, "§5", f"software version {sv!r}")
    check(r.done(), "§5", "GetVersion body has nothing after the version")
    r = ok_body(c.call(2), "§5", "GetNumConnections")
    n = r.u64()
    check(n >= 1 and r.done(), "§5", f"GetNumConnections {n} >= 1, exactly 8 bytes")
    r = ok_body(c.call(3), "§5", "GetStats")
    stats = {}
    for _ in range(r.u32()):
        name = r.str8()
        stats[name] = r.u64()
    check(r.done() and stats, "§5", "GetStats: u32 n, n x (str8, u64), nothing after")
    for code in (1, 2, 3):
        status_is(c.call(code, b"x"), "BadRequest", "§5", f"request {code} with a body")
    status_is(c.call(4), "UnsupportedRequest", "§5", "reserved common code 4")
    status_is(c.call(foreign_code), "UnsupportedRequest", "§3.1",
              f"code {foreign_code} of another node kind")
    status_is(c.call(200), "UnsupportedRequest", "§3.1", "request code 200")
    # A Control frame for an id with no running stream is ignored (§2.2).
    c.send_frame(T_CONTROL, CTL_CREDIT, 999, u32(5))
    c.send_frame(T_CONTROL, CTL_STOP, 998)
    check(c.quiet(), "§2.2", "a Control frame for no running stream gets no frame back")
    c.send_frame(T_CONTROL, CTL_CREDIT, 997, u32(5) + b"more")
    check(c.quiet(), "§2", "bytes after a Credit's u32 are ignored")
    ok_body(c.call(1), "§2.2", "the connection serves after ignored Control frames")
    # Pipelining: many requests in flight, one Reply each, matched by id.
    ids = [c.send(1) for _ in range(50)]
    got = {}
    for _ in ids:
        ftype, st, _, rid, _ = c.recv_frame()
        got[rid] = (ftype, st)
    check(list(got) == ids and all(v == (T_REPLY, 0) for v in got.values()), "§2",
          "50 pipelined GetVersions: one Ok Reply per id, in the order sent")
    c.close()
    if kind == KIND_DHT:
        check("catch_up_state" in stats, "§6.13", "GetStats lists catch_up_state")
        check_eq(stats.get("catch_up_state"), 0, "§6.13", "catch_up_state of a node without peers")
    protocol_errors(node, kind)


# §5.1: the names GetStats lists, and how a few of them move

STATS_COMMON = ["connections_open", "streams_open", "stream_memory_bytes", "connections_accepted",
                "connections_refused", "handshakes_failed", "tls_handshakes_deferred",
                "protocol_errors", "bytes_in", "bytes_out", "connections_max", "uptime_s"]
STATS_REQUEST = ["handled", "failed", "mean_us", "max_us", "handled_10us", "handled_100us",
                 "handled_1ms", "handled_10ms", "handled_100ms", "handled_over_100ms"]
# Per kind: the names always listed, those listed under a condition (each node here runs with
# the defaults: a dht change log with fsyncs, logfiles fsync "interval", a data directory that
# statvfs reads), and the per-channel suffixes.
STATS_KIND = {
    KIND_DHT: (["total_records", "total_bytes", "listeners", "tombstones", "redistributing",
                "redistribution_moved", "catch_up_state", "catch_up_records",
                "catch_up_tombstones", "dumping", "dump_failures", "dump_period_s",
                "last_dump_age_s"],
               ["log_position", "log_bytes", "log_writes_awaiting_fsync", "log_fsyncs",
                "log_fsync_failures"],
               ["records", "bytes"]),
    KIND_LOGFILES: (["channels", "total_buckets", "total_bytes", "open_buckets",
                     "writes_awaiting_fsync"],
                    ["disk_size_bytes", "disk_free_bytes", "group_commits",
                     "group_commit_failures", "group_commit_mean_us"],
                    []),
    KIND_QUEUE: (["total_records", "total_bytes", "total_used_bytes", "total_capacity_bytes",
                  "consumers", "pushed_records", "removed_records"],
                 [],
                 ["records", "bytes", "fill_percent"]),
}


def get_stats(c, section="§5.1"):
    """GetStats as a dict; a name listed twice fails the check."""
    r = ok_body(c.call(3), section, "GetStats")
    n = r.u32()
    pairs = [(r.str8(), r.u64()) for _ in range(n)]
    check(r.done(), section, "GetStats: nothing after the n pairs")
    stats = dict(pairs)
    check_eq(len(stats), len(pairs), section, "GetStats lists each name once")
    return stats


def check_stats_names(stats, kind, channels, types, what):
    """Whether `stats` lists exactly the names §5.1 promises for `kind`, given the request types
    answered so far on this node (`types`) and the channels written (`channels`)."""
    always, conditional, per_channel = STATS_KIND[kind]
    want = set(STATS_COMMON) | set(always) | set(conditional)
    want |= {f"request/{t}/{suffix}" for t in types for suffix in STATS_REQUEST}
    want |= {f"channel/{ch}/{suffix}" for ch in channels for suffix in per_channel}
    got = set(stats)
    check(got == want, "§5.1", f"{what}: GetStats lists exactly the documented names; "
          f"undocumented {sorted(got - want)}, missing {sorted(want - got)}")


def test_stats(bin_dir, tmp, binary, kind):
    """The names of §5.1 on a node of its own with the defaults, and the counters a write
    moves."""
    node = Node(bin_dir, binary, kind, tmp, f"stats-{binary}")
    try:
        stats_moves(node, kind)
    finally:
        node.stop()


def stats_moves(node, kind):
    c = Conn(node, kind=kind)
    before = get_stats(c)
    check_stats_names(before, kind, [], [], "before any request")
    after = get_stats(c)
    check_stats_names(after, kind, [], ["GetStats"], "after one GetStats")
    check_eq(after.get("request/GetStats/handled", 0) - before.get("request/GetStats/handled", 0),
             1, "§5.1", "request/GetStats/handled counts the GetStats answered before")
    ch = "stats-ch"
    if kind == KIND_DHT:
        check_eq(c.call(16, str8(ch) + u64(7) + b"12345"), (0, b""), "§6.2", "Put")
        moved = get_stats(c)
        check_stats_names(moved, kind, [ch], ["GetStats", "Put"], "after a dht Put")
        check_eq(moved.get("request/Put/handled"), 1, "§5.1", "request/Put/handled after a Put")
        check_eq(moved["total_records"] - after["total_records"], 1, "§5.1",
                 "a Put of a new key adds 1 to total_records")
        check_eq(moved["total_bytes"] - after["total_bytes"], 8 + 5, "§5.1",
                 "a Put of a new 5-byte value adds 8 + 5 to total_bytes")
        check_eq((moved.get(f"channel/{ch}/records"), moved.get(f"channel/{ch}/bytes")),
                 (1, 13), "§5.1", "channel/<ch>/records and bytes after one Put")
        check(moved["log_position"] > after["log_position"], "§5.1",
              "a Put moves log_position forward")
    elif kind == KIND_LOGFILES:
        check_eq(c.call(48, str8(ch) + u64(7) + b"12345"), (0, b""), "§7.2", "Put")
        moved = get_stats(c)
        check_stats_names(moved, kind, [], ["GetStats", "Put"], "after a logfiles Put")
        check_eq(moved.get("request/Put/handled"), 1, "§5.1", "request/Put/handled after a Put")
        check_eq(moved["channels"] - after["channels"], 1, "§5.1",
                 "a Put to a new channel adds 1 to channels")
        check(moved["total_bytes"] > after["total_bytes"] and moved["total_buckets"] >
              after["total_buckets"], "§5.1", "a Put to a new channel adds a bucket and bytes")
        check(moved["open_buckets"] >= 1, "§5.1", "the bucket written is open for writing")
    else:
        check_eq(c.call(80, str8(ch) + b"12345"), (0, b""), "§8.2", "Push")
        pushed = get_stats(c)
        check_stats_names(pushed, kind, [ch], ["GetStats", "Push"], "after a Push")
        check_eq(pushed.get("request/Push/handled"), 1, "§5.1", "request/Push/handled")
        check_eq((pushed["pushed_records"] - after["pushed_records"],
                  pushed["total_records"] - after["total_records"],
                  pushed["total_bytes"] - after["total_bytes"]), (1, 1, 5), "§5.1",
                 "a Push adds 1 to pushed_records and total_records, its length to total_bytes")
        check_eq(pushed.get(f"channel/{ch}/records"), 1, "§5.1", "channel/<storage>/records")
        check_eq(c.call(81, str8(ch)), (0, b"12345"), "§8.2", "Pop")
        popped = get_stats(c)
        check_stats_names(popped, kind, [ch], ["GetStats", "Push", "Pop"], "after a Pop")
        check_eq((popped["removed_records"] - pushed["removed_records"],
                  popped["total_records"] - pushed["total_records"]), (1, -1), "§5.1",
                 "a Pop adds 1 to removed_records and takes 1 from total_records")
    c.close()


def protocol_errors(node, kind):
    cases = [
        ("a header longer than max_frame_bytes", dict(ftype=T_REQUEST, code=1, length=MAX_FRAME + 1),
         "FrameTooLarge"),
        ("an unknown frame type", dict(ftype=9, code=1), "BadRequest"),
        ("non-zero flags", dict(ftype=T_REQUEST, code=1, flags=1), "BadRequest"),
        ("a Reply frame from the client", dict(ftype=T_REPLY, code=0), "BadRequest"),
        ("an Item frame from the client", dict(ftype=T_ITEM, code=1), "BadRequest"),
        ("an unknown control code", dict(ftype=T_CONTROL, code=9), "BadRequest"),
        ("a Credit without its u32", dict(ftype=T_CONTROL, code=CTL_CREDIT), "BadRequest"),
    ]
    for label, f, want in cases:
        c = Conn(node, kind=kind)
        other = Conn(node, kind=kind)
        c.send_frame(f["ftype"], f["code"], 77, b"", flags=f.get("flags", 0),
                     length=f.get("length"))
        try:
            ftype, st, _, rid, body = c.recv_frame()
            check(ftype == T_REPLY and st == ST[want] and rid == 77, "§2",
                  f"{label}: Reply {ST_NAME.get(st, st)} for id {rid}, want {want} for id 77")
            check(len(body) > 0, "§2", f"{label}: the Reply carries a message")
        except (Closed, socket.timeout) as e:
            check(False, "§2", f"{label}: no Reply ({e})")
        check(c.closed_by_node(), "§2", f"{label}: the node closes the connection")
        ok_body(other.call(1), "§2", f"{label}: another connection is unaffected")
        c.close()
        other.close()


# ---------------------------------------------------------------------------------------------
# §6: dht


def get_all_body(ch, flags=0, resume=0, after=0, filt=b""):
    return str8(ch) + u8(flags) + u8(resume) + u64(after) + u32(len(filt)) + filt


def batch_records(items, code=1, compressed=True):
    out = []
    for c, body in items:
        check_eq(c, code, "§2.2", "item code of a record batch")
        recs = parse_batch(body, compressed)
        check(len(recs) >= 1, "§2.2", "a stream never sends an empty batch")
        out += recs
    return out


def test_dht_basic(c):
    ch = "conf"
    put = lambda k, v, chn=ch: c.call(16, str8(chn) + u64(k) + v)
    st = put(1, b"one")
    check_eq(st, (0, b""), "§6.2", "Put: Ok empty")
    check_eq(c.call(17, str8(ch) + u64(1)), (0, b"one"), "§6.2", "Get: Ok with the value")
    check_eq(c.call(17, str8(ch) + u64(2)), (1, b""), "§6.2", "Get absent: NotFound empty")
    check_eq(c.call(18, str8(ch) + u64(1)), (0, b""), "§6.2", "Exists present: Ok empty")
    check_eq(c.call(18, str8(ch) + u64(2)), (1, b""), "§6.2", "Exists absent: NotFound empty")
    check_eq(put(1, b"uno"), (0, b""), "§6.2", "Put over an existing key")
    check_eq(c.call(17, str8(ch) + u64(1)), (0, b"uno"), "§6.2", "Get after overwrite")
    check_eq(c.call(19, str8(ch) + u64(1)), (0, b""), "§6.2", "Remove present: Ok empty")
    check_eq(c.call(19, str8(ch) + u64(1)), (1, b""), "§6.2", "Remove absent: NotFound empty")
    for bad in ("", "a b", "x" * 101, "é"):
        status_is(put(5, b"v", bad), "BadChannelName", "§6.1", f"Put to channel {bad!r}")
        status_is(c.call(17, str8(bad) + u64(5)), "BadChannelName", "§6.1", f"Get {bad!r}")
    check_eq(put(5, b"v", "A" * 100)[0], 0, "§6.1", "a 100-byte channel name")
    status_is(put(5, b""), "EmptyValue", "§6.1", "Put of an empty value")
    status_is(put(5, b"v" * (1024 * 1024 + 1)), "ValueTooBig", "§6.1", "Put of 1 MiB + 1")
    check_eq(put(6, b"v" * (1024 * 1024))[0], 0, "§6.1", "Put of exactly 1 MiB")
    status_is(c.call(17, str8(ch) + u64(1) + b"x"), "BadRequest", "§2", "Get with a byte after")
    status_is(c.call(17, str8(ch) + b"\x01\x02"), "BadRequest", "§3.1", "Get with a cut key")
    status_is(c.call(21, b"x"), "BadRequest", "§2", "GetChannels with a body")
    # Sizes and channels
    c.call(24, str8("A" * 100))
    c.call(19, str8(ch) + u64(6))
    check_eq(put(10, b"abc")[0], 0, "§6.2", "Put")
    check_eq(put(11, b"defgh")[0], 0, "§6.2", "Put")
    check_eq(put(10, b"abc", "other")[0], 0, "§6.2", "Put")
    r = ok_body(c.call(21), "§6.2", "GetChannels")
    names = [r.str8() for _ in range(r.u32())]
    check(r.done() and names == sorted(names) and {"conf", "other"} <= set(names), "§6.2",
          f"GetChannels sorted names {names}")
    r = ok_body(c.call(22, str8(ch)), "§6.2", "GetChannelSize")
    check_eq((r.u64(), r.u64(), r.done()), (2, 8 + 3 + 8 + 5, True), "§6.2",
             "GetChannelSize records, bytes (8 + value length each)")
    r = ok_body(c.call(22, str8("missing")), "§6.2", "GetChannelSize of a missing channel")
    check_eq((r.u64(), r.u64(), r.done()), (0, 0, True), "§6.2", "missing channel size")
    r = ok_body(c.call(23), "§6.2", "GetSize")
    check_eq((r.u64(), r.u64(), r.done()), (3, 11 + 13 + 11, True), "§6.2", "GetSize over all")
    r = ok_body(c.call(25), "§6.2", "GetResponsibleRange")
    check_eq((r.u64(), r.u64(), r.done()), (FULL_MIN, FULL_MAX, True), "§6.2",
             "default range of a node started without one")
    check_eq(c.call(24, str8("other")), (0, b""), "§6.2", "RemoveChannel")
    check_eq(c.call(24, str8("never")), (0, b""), "§6.2", "RemoveChannel of a missing channel")
    status_is(c.call(24, str8("")), "BadChannelName", "§6.2", "RemoveChannel bad name")
    check_eq(c.call(22, str8("other"))[1], bytes(16), "§6.2", "size of a removed channel")
    # Byte-string keys: FNV-1a vectors
    check_eq(fnv1a(b""), 0xCBF29CE484222325, "§6.1", "FNV-1a of no bytes")
    check_eq(fnv1a(b"a"), 0xAF63DC4C8601EC8C, "§6.1", "FNV-1a of 'a'")


def test_dht_update(c):
    ch = "upd"
    upd = lambda k, exp, h, act, v=b"": c.call(28, str8(ch) + u64(k) + u8(exp) + u64(h) + u8(act) + v)
    check_eq(upd(1, 0, 0, 1, b"first"), (0, b""), "§6.5", "Update expected absent, write")
    check_eq(c.call(17, str8(ch) + u64(1)), (0, b"first"), "§6.5", "value after Update")
    status_is(upd(1, 0, 0, 1, b"again"), "UpdateConflict", "§6.5", "Update absent on a present key")
    status_is(upd(1, 1, fnv1a(b"other"), 1, b"x"), "UpdateConflict", "§6.5", "Update wrong hash")
    check_eq(upd(1, 1, fnv1a(b"first"), 1, b"second"), (0, b""), "§6.5", "Update right hash")
    check_eq(c.call(17, str8(ch) + u64(1)), (0, b"second"), "§6.5", "value after CAS")
    status_is(upd(1, 1, fnv1a(b"second"), 2, b"x"), "BadRequest", "§6.5",
              "Update remove with bytes after the action")
    check_eq(upd(1, 1, fnv1a(b"second"), 2), (0, b""), "§6.5", "Update remove")
    check_eq(c.call(18, str8(ch) + u64(1))[0], 1, "§6.5", "record gone after Update remove")
    status_is(upd(1, 1, 5, 2), "UpdateConflict", "§6.5", "Update remove of an absent key")
    status_is(upd(2, 0, 0, 1, b""), "EmptyValue", "§6.2", "Update write of an empty value")
    status_is(upd(2, 2, 0, 1, b"v"), "BadRequest", "§3.1", "Update with expected 2")
    status_is(upd(2, 0, 0, 3, b"v"), "BadRequest", "§3.1", "Update with action 3")


def test_dht_getall(c):
    ch = "ga"
    recs = [(k, (b"val-%d-" % k) * (k % 7 + 1)) for k in range(1, 301)]
    body = str8(ch) + make_batch(recs)
    r = ok_body(c.call(26, body), "§6.2", "PutBatch")
    check_eq((r.u64(), r.done()), (300, True), "§6.2", "PutBatch records stored")
    r = ok_body(c.call(26, str8(ch) + make_batch([])), "§4", "PutBatch of an empty batch")
    check_eq((r.u64(), r.done()), (0, True), "§4", "an empty batch stores 0")
    check_eq(c.call(22, str8("emptybatch") + b"")[1], bytes(16), "§4", "size")
    c.call(26, str8("emptybatch") + make_batch([]))
    r = ok_body(c.call(21), "§6.2", "GetChannels")
    names = [r.str8() for _ in range(r.u32())]
    check("emptybatch" not in names, "§4", "an empty PutBatch creates no channel")
    bad = bytearray(make_batch([(1, b"x")]))
    bad[8] ^= 1
    status_is(c.call(26, str8(ch) + bytes(bad)), "BadRequest", "§4", "PutBatch with a bad CRC")
    status_is(c.call(26, str8(ch) + make_batch([(1, b"x")]) + b"z"), "BadRequest", "§4",
              "PutBatch batch followed by a byte")
    status_is(c.call(26, str8(ch) + make_batch([(1, b"x"), (2, b"")])), "EmptyValue", "§6.2",
              "PutBatch with one empty value: all or nothing")
    check_eq(c.call(17, str8(ch) + u64(1))[1], recs[0][1], "§6.2", "nothing of a refused batch")
    items, st, rb = c.stream(20, get_all_body(ch))
    check_eq((st, rb), (0, b""), "§6.3", "GetAll final Reply Ok empty")
    got = batch_records(items)
    check_eq(sorted(got), sorted(recs), "§6.3", "GetAll returns every record exactly once")
    items, st, _ = c.stream(20, get_all_body(ch, flags=1))
    got = batch_records(items)
    check(st == 0 and sorted(k for k, _ in got) == list(range(1, 301))
          and all(v == b"" for _, v in got), "§6.3", "GetAll keys only")
    items, st, _ = c.stream(20, get_all_body(ch, filt=b"val-7-"))
    got = batch_records(items)
    want = sorted(r for r in recs if b"val-7-" in r[1])
    check_eq(sorted(got), want, "§6.3", "GetAll with a filter")
    items, st, _ = c.stream(20, get_all_body(ch, flags=1, filt=b"val-7-"))
    check_eq(sorted(k for k, _ in batch_records(items)), [k for k, _ in want], "§6.3",
             "GetAll keys only with a filter")
    # resume: the order is fixed by the keys; resuming after the i-th key gives the rest.
    items, _, _ = c.stream(20, get_all_body(ch))
    order = [k for k, _ in batch_records(items)]
    mid = order[137]
    items, st, _ = c.stream(20, get_all_body(ch, resume=1, after=mid))
    check_eq([k for k, _ in batch_records(items)], order[138:], "§6.3",
             "GetAll resume after a key gives exactly the records after it")
    for flags, label in ((2, "inside"), (4, "outside")):
        items, st, _ = c.stream(20, get_all_body(ch, flags=flags))
        n = len(batch_records(items))
        check(st == 0 and n == (300 if flags == 2 else 0), "§6.3", f"GetAll scope {label}: {n}")
    for flags in (6, 8, 0x80):
        items, st, rb = c.stream(20, get_all_body(ch, flags=flags))
        check(not items and st == ST["BadRequest"], "§6.3", f"GetAll flags {flags}: BadRequest")
    items, st, _ = c.stream(20, get_all_body(ch, resume=2))
    check(not items and st == ST["BadRequest"], "§3.1", "GetAll resume 2: BadRequest")
    items, st, _ = c.stream(20, get_all_body(ch, filt=b"f" * 4097))
    check(not items and st == ST["BadRequest"], "§6.3", "GetAll filter over 4096 bytes")
    items, st, _ = c.stream(20, get_all_body("bad name"))
    check(not items and st == ST["BadChannelName"], "§6.2", "GetAll bad channel name")
    items, st, rb = c.stream(20, get_all_body("nosuch"))
    check(not items and (st, rb) == (0, b""), "§6.3", "GetAll of a missing channel: empty stream")
    # Flow control: a stream starts with credit 4 and pauses at 0.
    big = "gabig"
    for base in range(0, 4000, 500):
        c.call(26, str8(big) + make_batch([(k, b"y" * 200) for k in range(base, base + 500)]))
    items, st, _ = c.stream(20, get_all_body(big))
    sizes = [struct.unpack("<I", b[:4])[0] for _, b in items]
    check(st == 0 and len(batch_records(items)) == 4000 and max(sizes) <= 64 * 1024 + 212,
          "§2.2", f"GetAll batches of about 64 KiB uncompressed: {sizes}")
    # The final Reply waits for a positive credit too.
    rid = c.send(20, get_all_body(big))
    c.credit(rid, len(items) - 4)
    exact, rep = c.items_until(rid, len(items))
    check(rep is None and c.quiet(0.3), "§2.2",
          "the final Reply waits for credit once the last Item spent it")
    c.credit(rid, 1)
    check_eq(c.reply_for(rid), (0, b""), "§2.2", "the final Reply comes with one more credit")
    rid = c.send(20, get_all_body(big))
    items, rep = c.items_until(rid, 4)
    check(rep is None and len(items) == 4, "§2.2", "4 Items on the initial credit")
    check(c.quiet(0.5), "§2.2", "the stream pauses once its credit of 4 is spent")
    c.credit(rid, 2)
    items2, rep = c.items_until(rid, 2)
    check(c.quiet(0.3), "§2.2", "2 more Items for a credit of 2, then a pause")
    c.stop(rid)
    rest = []
    while True:
        ftype, st, _, fid, fb = c.recv_frame()
        if ftype == T_REPLY:
            check_eq((fid, st, fb), (rid, 0, b""), "§2.2", "Stop ends the stream with Ok empty")
            break
        rest.append(fb)
    got = batch_records(items + items2 + [(1, b) for b in rest])
    check(len(got) < 4000, "§2.2", "Stop cut the stream short")


def items_to_end(conn, rid, section, what):
    """The (code, body) of every Item of `rid` up to its Reply, which must be Ok and empty."""
    items = []
    while True:
        ftype, code, _, fid, fb = conn.recv_frame()
        if ftype == T_REPLY:
            check_eq((fid, code, fb), (rid, 0, b""), section, what)
            return items
        items.append((code, fb))


def test_dht_listen(node):
    lc = Conn(node, kind=KIND_DHT)
    w = Conn(node, kind=KIND_DHT)
    ch = "lis"
    rid = lc.send(27, str8(ch))
    lc.credit(rid, 1000)
    time.sleep(0.2)
    w.call(16, str8(ch) + u64(7) + b"seven")
    w.call(19, str8(ch) + u64(7))
    w.call(19, str8(ch) + u64(8))
    w.call(26, str8(ch) + make_batch([(1, b"a"), (2, b"b")]))
    w.call(28, str8(ch) + u64(1) + u8(1) + u64(fnv1a(b"a")) + u8(1) + b"A")
    w.call(28, str8(ch) + u64(2) + u8(1) + u64(fnv1a(b"b")) + u8(2))
    w.call(33, str8(ch) + u64(3) + u64(10) + b"v10")
    w.call(34, str8(ch) + u64(3) + u64(11))
    w.call(34, str8(ch) + u64(4) + u64(11))
    w.call(24, str8(ch))
    items = []
    for code, fb in items_to_end(lc, rid, "§6.4", "Listen ends Ok empty on RemoveChannel"):
        r = Reader(fb)
        if code == 1:
            items.append(("C", r.u64(), r.rest()))
        elif code == 2:
            items.append(("R", r.u64()))
            check(r.done(), "§6.4", "Removed body is u64 key only")
        else:
            items.append(("?", code))
    want = [("C", 7, b"seven"), ("R", 7), ("C", 1, b"a"), ("C", 2, b"b"), ("C", 1, b"A"),
            ("R", 2), ("C", 3, b"v10"), ("R", 3)]
    check_eq(items, want, "§6.4", "Listen items in change order")
    items, st, _ = lc.stream(27, str8("bad name"))
    check(not items and st == ST["BadChannelName"], "§6.2", "Listen bad channel name")
    # A Listen on a missing channel waits; its channel is in no GetChannels answer
    rid = lc.send(27, str8("lis2"))
    lc.credit(rid, 10)
    r = ok_body(w.call(21), "§6.4", "GetChannels")
    names = [r.str8() for _ in range(r.u32())]
    check("lis2" not in names, "§6.4", "a waiting Listen creates no channel")
    w.call(24, str8("lis2"))
    ftype, code, _, fid, fb = lc.recv_frame()
    check_eq((ftype, fid, code), (T_REPLY, rid, 0), "§6.4",
             "RemoveChannel of a missing channel ends the Listens waiting on it")
    lc.close()
    w.close()


def test_dht_versions(c):
    ch = "ver"
    pv = lambda k, v, val: c.call(33, str8(ch) + u64(k) + u64(v) + val)
    rv = lambda k, v: c.call(34, str8(ch) + u64(k) + u64(v))
    gv = lambda k: c.call(35, str8(ch) + u64(k))
    check_eq(pv(1, 10, b"ten"), (0, b"\x01"), "§6.11", "PutVersion new key: applied 1")
    check_eq(pv(1, 10, b"ten"), (0, b"\x00"), "§6.11", "PutVersion same write again: applied 0")
    check_eq(pv(1, 9, b"nine"), (0, b"\x00"), "§6.11", "PutVersion older: applied 0")
    check_eq(pv(1, 10, b"tex"), (0, b"\x01"), "§6.11", "equal version, greater value wins")
    check_eq(pv(1, 10, b"te"), (0, b"\x00"), "§6.11", "equal version, prefix loses")
    check_eq(gv(1), (0, u64(10) + b"tex"), "§6.11", "GetWithVersion: version, value")
    check_eq(rv(1, 10), (0, b"\x01"), "§6.11", "RemoveVersion equal version beats a record")
    check_eq(gv(1), (1, u64(10)), "§6.11", "GetWithVersion of a tombstone: NotFound + version")
    check_eq(c.call(17, str8(ch) + u64(1))[0], 1, "§6.11", "Get does not see a tombstone")
    check_eq(rv(1, 10), (0, b"\x00"), "§6.11", "same tombstone again: applied 0")
    check_eq(pv(1, 10, b"zzz"), (0, b"\x00"), "§6.11", "record at the tombstone's version loses")
    check_eq(pv(1, 11, b"eleven"), (0, b"\x01"), "§6.11", "newer record replaces a tombstone")
    check_eq(gv(2), (1, b""), "§6.11", "GetWithVersion of nothing: NotFound empty")
    check_eq(rv(2, 5), (0, b"\x01"), "§6.11", "RemoveVersion of a key not held: tombstone")
    check_eq(pv(2, 4, b"old"), (0, b"\x00"), "§6.11", "an older write after the tombstone")
    check_eq(c.call(16, str8(ch) + u64(3) + b"plain")[0], 0, "§6.11", "Put")
    check_eq(gv(3), (0, u64(0) + b"plain"), "§6.11", "a Put's record has version 0")
    check_eq(pv(3, 0, b"zzzz"), (0, b"\x00"), "§6.11", "version 0 write over a held key")
    check_eq(pv(4, 0, b"zero"), (0, b"\x01"), "§6.11", "version 0 write of a key not held")
    check_eq(c.call(16, str8(ch) + u64(2) + b"put")[0], 0, "§6.11", "Put over a tombstone")
    check_eq(gv(2), (0, u64(0) + b"put"), "§6.11", "Put replaces a tombstone, at version 0")
    status_is(pv(9, 1, b""), "EmptyValue", "§6.2", "PutVersion empty value")
    status_is(c.call(34, str8(ch) + u64(9) + u64(1) + b"x"), "BadRequest", "§2",
              "RemoveVersion with a byte after")
    r = ok_body(c.call(22, str8(ch)), "§6.11", "GetChannelSize")
    check_eq(r.u64(), 4, "§6.11", "tombstones are not counted as records")
    # PutBatchVersion
    ch = "pbv"
    items = [(1, u64(5) + b"a"), (2, u64(5)), (1, u64(4) + b"old"), (3, u64(7) + b"c")]
    r = ok_body(c.call(39, str8(ch) + make_batch(items)), "§6.14", "PutBatchVersion")
    check_eq((r.u64(), r.u64(), r.done()), (3, 1, True), "§6.14", "applied, skipped")
    check_eq(c.call(35, str8(ch) + u64(2)), (1, u64(5)), "§6.14", "a batch tombstone")
    check_eq(c.call(35, str8(ch) + u64(1)), (0, u64(5) + b"a"), "§6.14", "newer item kept")
    status_is(c.call(39, str8(ch) + make_batch([(1, b"short")])), "BadRequest", "§6.14",
              "PutBatchVersion record value under 8 bytes")
    r = ok_body(c.call(39, str8(ch) + make_batch(items)), "§6.14", "PutBatchVersion again")
    check_eq((r.u64(), r.u64()), (0, 4), "§6.14", "the same batch twice applies nothing")


def test_dht_mirror(node):
    w = Conn(node, kind=KIND_DHT)
    m = Conn(node, kind=KIND_DHT)
    ch = "mir"
    w.call(33, str8(ch) + u64(1) + u64(3) + b"one")
    w.call(34, str8(ch) + u64(2) + u64(4))
    w.call(16, str8(ch) + u64(5) + b"five")
    rid = m.send(36, str8(ch) + u8(1) + u32(0))
    m.credit(rid, 1000)
    seen = []
    refresh = []
    while True:
        ftype, code, _, fid, fb = m.recv_frame()
        r = Reader(fb)
        if code == 4:
            seen.append(("started", r.u64(), r.u64()))
        elif code == 5:
            refresh += parse_batch(fb)
        elif code == 6:
            seen.append(("done", r.u64(), r.u64()))
            break
        else:
            seen.append((code, fb))
    check_eq(seen, [("started", 2, 1), ("done", 2, 1)], "§6.12",
             "RefreshStarted and RefreshDone counts (records, tombstones)")
    check_eq(sorted(refresh), [(1, u64(3) + b"one"), (2, u64(4)), (5, u64(0) + b"five")],
             "§6.12", "RefreshBatch records with versions, tombstone as the version alone")
    w.call(16, str8(ch) + u64(6) + b"six")
    w.call(33, str8(ch) + u64(7) + u64(9) + b"seven")
    w.call(19, str8(ch) + u64(6))
    w.call(34, str8(ch) + u64(7) + u64(10))
    w.call(24, str8(ch))
    items = []
    for code, fb in items_to_end(m, rid, "§6.12", "Mirror ends Ok empty on RemoveChannel"):
        r = Reader(fb)
        if code == 1:
            items.append(("C", r.u64(), r.u64(), r.rest()))
        elif code == 2:
            items.append(("R", r.u64(), r.u64()))
        else:
            items.append((code,))
    check_eq(items, [("C", 6, 0, b"six"), ("C", 7, 9, b"seven"), ("R", 6, 0), ("R", 7, 10)],
             "§6.12", "Mirror change items with versions")
    for body, label in ((str8(ch) + u8(2) + u32(0), "flags bit 1"),
                        (str8(ch) + u8(0) + u32(604801), "period over a week")):
        items, st, _ = m.stream(36, body)
        check(not items and st == ST["BadRequest"], "§6.12", f"Mirror {label}: BadRequest")
    # A Mirror of a missing channel with refresh: RefreshStarted and RefreshDone with zeros.
    rid = m.send(36, str8("mir-none") + u8(1) + u32(0))
    items, rep = m.items_until(rid, 2)
    check_eq([(c, b) for c, b in items], [(4, bytes(16)), (6, bytes(16))], "§6.12",
             "refresh of a missing channel")
    m.stop(rid)
    ftype, code, _, fid, fb = m.recv_frame()
    check_eq((ftype, code, fid, fb), (T_REPLY, 0, rid, b""), "§6.12", "Stop ends a Mirror with Ok")
    m.close()
    w.close()


def test_dht_redist_admin(c):
    r = ok_body(c.call(32), "§6.9", "GetRedistribution")
    mn, mx, running, inst = r.u64(), r.u64(), r.u8(), r.u64()
    moved, total, fails, err = r.u64(), r.u64(), r.u64(), r.bytes_()
    check_eq((mn, mx, running, moved, total, fails, err, r.done()),
             (FULL_MIN, FULL_MAX, 0, 0, 0, 0, b"", True), "§6.9",
             "GetRedistribution of a node that never redistributed")
    r = ok_body(c.call(31, str8("nochan")), "§6.8", "RedistCommit of a missing channel")
    check_eq((r.u64(), r.done()), (inst, True), "§6.8", "RedistCommit instance")
    r = ok_body(c.call(30, str8("rb") + make_batch([(1, b"a"), (2, b"b"), (1, b"c")])),
                "§6.7", "RedistBatch")
    check_eq((r.u64(), r.u64(), r.u64(), r.done()), (2, 1, inst, True), "§6.7",
             "RedistBatch stored, present (first copy counts), instance")
    check_eq(c.call(17, str8("rb") + u64(1)), (0, b"a"), "§6.7", "first copy of a key counts")
    r = ok_body(c.call(30, str8("rb") + make_batch([(1, b"x"), (3, b"c")])), "§6.7", "again")
    check_eq((r.u64(), r.u64()), (1, 1), "§6.7", "RedistBatch skips keys with a value")
    r = ok_body(c.call(31, str8("rb")), "§6.8", "RedistCommit")
    check_eq(r.u64(), inst, "§6.8", "RedistCommit instance")
    items = [(1, u64(7) + b"v"), (5, u64(2)), (5, u64(1) + b"older")]
    r = ok_body(c.call(38, str8("rbv") + make_batch(items)), "§6.7", "RedistBatchVersion")
    check_eq((r.u64(), r.u64(), r.u64(), r.done()), (2, 1, inst, True), "§6.7",
             "RedistBatchVersion stored, present, instance")
    status_is(c.call(38, str8("rbv") + make_batch([(1, b"x")])), "BadRequest", "§6.7",
              "RedistBatchVersion record value under 8 bytes")
    r = ok_body(c.call(37), "§6.13", "SetReady")
    check_eq((r.u8(), r.done()), (0, True), "§6.13", "SetReady on a ready node: state 0")
    status_is(c.call(37, b"x"), "BadRequest", "§2", "SetReady with a body")
    # Redistribute: refused targets
    ranges = [
        ("targets not covering the current range", u64(0) + u64(FULL_MAX >> 1) + u16(0)),
        ("a target overlapping the new range",
         u64(0) + u64(FULL_MAX >> 1) + u16(1) + str8("127.0.0.1:1") + u64(5) + u64(FULL_MAX)),
        ("an unparsable address",
         u64(0) + u64(FULL_MAX >> 1) + u16(1) + str8("localhost:1") + u64(FULL_MAX >> 1) + u64(1)),
    ]
    half = 1 << 63
    own = u64(0) + u64(half - 1)
    t5 = str8("127.0.0.1:5")
    ranges += [
        ("an address listed twice", own + u16(2) + t5 + u64(half) + u64(FULL_MAX - 5) + t5
         + u64(FULL_MAX - 4) + u64(FULL_MAX)),
        ("an empty target range", own + u16(2) + t5 + u64(half) + u64(FULL_MAX)
         + str8("127.0.0.1:6") + u64(5) + u64(1)),
        ("a target sharing the node's new range", own + u16(2) + t5 + u64(half) + u64(FULL_MAX)
         + str8("127.0.0.1:6") + own),
        ("1025 targets", own + u16(1025)),
        ("a byte after the targets", u64(0) + u64(FULL_MAX) + u16(0) + b"x"),
    ]
    for label, body in ranges:
        items, st, reply = c.stream(29, body)
        check(not items and st == ST["BadRequest"], "§6.6", f"Redistribute with {label}")
        if label == "1025 targets":
            check(b"1025 targets" in reply and b"bytes" not in reply, "§3",
                  f"the BadRequest message counts targets, not bytes: {reply!r}")


def test_dht_redistribute(bin_dir, tmp):
    half = 1 << 63
    a = Node(bin_dir, "dhtnode", KIND_DHT, tmp, "dht-a")
    b = Node(bin_dir, "dhtnode", KIND_DHT, tmp, "dht-b", extra=["--range", f"{half:016x}:ffffffffffffffff"])
    try:
        ca, cb = Conn(a, kind=KIND_DHT), Conn(b, kind=KIND_DHT)
        r = ok_body(cb.call(25), "§6.2", "GetResponsibleRange of --range")
        check_eq((r.u64(), r.u64()), (half, FULL_MAX), "§6.2", "range from --range")
        recs = [(k, b"r%d" % k) for k in range(1, 201)]
        ca.call(26, str8("mv") + make_batch(recs))
        outside = [k for k, _ in recs if reverse_bits(k) >= half]
        status_is(cb.call(16, str8("mv") + u64(next(k for k, _ in recs if reverse_bits(k) < half))
                          + b"x"), "WrongNode", "§6.1", "Put of a key outside the range")
        status_is(cb.call(17, str8("mv") + u64(next(k for k, _ in recs if reverse_bits(k) < half))),
                  "WrongNode", "§6.1", "Get of an absent key outside the range")
        out = next(k for k, _ in recs if reverse_bits(k) < half)
        for code, body, name in (
                (18, u64(out), "Exists"), (19, u64(out), "Remove"),
                (35, u64(out), "GetWithVersion"), (34, u64(out) + u64(3), "RemoveVersion"),
                (33, u64(out) + u64(3) + b"x", "PutVersion"),
                (28, u64(out) + u8(0) + u64(0) + u8(1) + b"x", "Update"),
                (26, make_batch([(out, b"x")]), "PutBatch"),
                (39, make_batch([(out, u64(3))]), "PutBatchVersion (a tombstone)"),
                (30, make_batch([(out, b"x")]), "RedistBatch")):
            status_is(cb.call(code, str8("mv") + body), "WrongNode", "§6.1",
                      f"{name} of a key outside the range that the node does not hold")
        addr = f"{b.addr[0]}:{b.addr[1]}"
        body = u64(0) + u64(half - 1) + u16(1) + str8(addr) + u64(half) + u64(FULL_MAX)
        items, st, rb = ca.stream(29, body, timeout=30)
        ok = status_is((st, rb), "Ok", "§6.6", "Redistribute final Reply")
        if ok:
            r = Reader(rb)
            check_eq((r.u64(), r.u64(), r.done()), (len(outside), 0, True), "§6.6",
                     "Redistribute moved, stranded")
        for code, fb in items:
            check_eq(code, 1, "§6.6", "Progress item code")
            r = Reader(fb)
            r.u64(), r.u64(), r.u64(), r.bytes_()
            check(r.done(), "§6.6", "Progress item: moved, total, failures, last_error")
        r = ok_body(cb.call(22, str8("mv")), "§6.6", "size on the target")
        check_eq(r.u64(), len(outside), "§6.6", "records on the target after the move")
        r = ok_body(ca.call(22, str8("mv")), "§6.6", "size on the source")
        check_eq(r.u64(), 200 - len(outside), "§6.6", "records left on the source")
        r = ok_body(ca.call(32), "§6.9", "GetRedistribution after a move")
        mn, mx, running = r.u64(), r.u64(), r.u8()
        r.u64()
        moved = r.u64()
        check_eq((mn, mx, running, moved), (0, half - 1, 0, len(outside)), "§6.9",
                 "range, running, moved after a move")
    finally:
        a.stop()
        b.stop()


def test_dht(bin_dir, tmp):
    node = Node(bin_dir, "dhtnode", KIND_DHT, tmp, "dht")
    try:
        test_handshake(node, KIND_DHT, KIND_QUEUE)
        test_common(node, KIND_DHT, 48)
        c = Conn(node, kind=KIND_DHT)
        test_dht_basic(c)
        test_dht_update(c)
        test_dht_getall(c)
        test_dht_versions(c)
        test_dht_redist_admin(c)
        c.close()
        test_dht_listen(node)
        test_dht_mirror(node)
        test_mirror_period(node)
        reuse_open_id(node, KIND_DHT, 27, str8("reuse"))
    finally:
        node.stop()
    test_dht_redistribute(bin_dir, tmp)
    test_connection_limits(bin_dir, tmp)
    test_dht_limits(bin_dir, tmp)
    test_dht_catch_up(bin_dir, tmp)
    test_shutdown(bin_dir, tmp)
    test_durability_always(bin_dir, tmp)


def reuse_open_id(node, kind, code, body):
    """§2: a Request with the id of an open request is a protocol error."""
    c = Conn(node, kind=kind)
    c.send_frame(T_REQUEST, code, 500, body)
    time.sleep(0.1)
    c.send_frame(T_REQUEST, 1, 500)
    ftype, st, _, rid, fb = c.recv_frame()
    check_eq((ftype, st, rid), (T_REPLY, ST["BadRequest"], 500), "§2",
             "a Request reusing an open stream's id gets BadRequest")
    check(c.closed_by_node(), "§2", "the connection closes after an id reused while open")
    c.close()


# ---------------------------------------------------------------------------------------------
# §7: logfiles


def range_body(ch, lo, hi, mode=0, filt=b"", flags=None):
    b = str8(ch) + u64(lo) + u64(hi) + u8(mode) + u32(len(filt)) + filt
    return b if flags is None else b + u8(flags)


def test_logfiles(bin_dir, tmp):
    node = Node(bin_dir, "logfilesnode", KIND_LOGFILES, tmp, "logfiles")
    try:
        test_handshake(node, KIND_LOGFILES, KIND_DHT)
        test_common(node, KIND_LOGFILES, 16)
        c = Conn(node, kind=KIND_LOGFILES)
        ch = "logs"
        check_eq(c.call(48, str8(ch) + u64(100) + b"hello world"), (0, b""), "§7.2", "Put Ok empty")
        check_eq(c.call(48, str8(ch) + u64(100) + b"second at 100"), (0, b""), "§7.2", "Put same key")
        check_eq(c.call(48, str8(ch) + u64(50) + b"Early Line"), (0, b""), "§7.2", "Put")
        recs = [(200 + i, b"batch line %d" % i) for i in range(20)]
        r = ok_body(c.call(49, str8(ch) + make_batch(recs)), "§7.2", "PutBatch")
        check_eq((r.u64(), r.done()), (20, True), "§7.2", "PutBatch records stored")
        status_is(c.call(48, str8(ch) + u64(1) + b""), "EmptyValue", "§7.1", "Put empty value")
        status_is(c.call(48, str8("no/slash") + u64(1) + b"x"), "BadChannelName", "§7.1", "bad name")
        status_is(c.call(48, str8(ch) + u64(1) + b"v" * (1024 * 1024 + 1)), "ValueTooBig", "§7.1",
                  "Put of 1 MiB + 1")
        status_is(c.call(49, str8(ch) + make_batch([(1, b"x"), (2, b"")])), "EmptyValue", "§7.2",
                  "PutBatch with one empty value")
        r = ok_body(c.call(49, str8("lg-empty") + make_batch([])), "§4", "PutBatch of an empty batch")
        check_eq(r.u64(), 0, "§4", "an empty batch stores 0")
        all_recs = [(50, b"Early Line"), (100, b"hello world"), (100, b"second at 100")] + recs
        items, st, rb = c.stream(50, range_body(ch, 0, FULL_MAX))
        check_eq((st, rb), (0, b""), "§7.3", "GetRange final Reply Ok empty")
        check_eq(batch_records(items), all_recs, "§7.3",
                 "GetRange in key order, equal keys in write order")
        items, st, _ = c.stream(50, range_body(ch, 100, 205))
        check_eq(batch_records(items), all_recs[1:9], "§7.3", "GetRange [100, 205] inclusive")
        items, st, _ = c.stream(50, range_body(ch, 300, 100))
        check(st == 0 and not items, "§7.3", "GetRange from > to: empty stream")
        items, st, _ = c.stream(50, range_body(ch, 0, FULL_MAX, 1, b"line 1"))
        want = [r for r in all_recs if b"line 1" in r[1]]
        check_eq(batch_records(items), want, "§7.3", "GetRange substring filter")
        items, st, _ = c.stream(50, range_body(ch, 0, FULL_MAX, 2, rb"^batch line 1\d$"))
        want = [r for r in all_recs if re.match(rb"^batch line 1\d$", r[1])]
        check_eq(batch_records(items), want, "§7.3", "GetRange regular expression")
        items, st, _ = c.stream(50, range_body(ch, 0, FULL_MAX, 3, b"early"))
        check_eq(batch_records(items), [(50, b"Early Line")], "§7.3", "regex ignoring case")
        items, st, _ = c.stream(50, range_body(ch, 0, FULL_MAX, 2, b"(unclosed"))
        check(not items and st == ST["BadRequest"], "§7.3", "a regex that does not compile")
        items, st, _ = c.stream(50, range_body(ch, 0, FULL_MAX, 4, b"x"))
        check(not items and st == ST["BadRequest"], "§7.2", "filter mode 4")
        items, st, _ = c.stream(50, range_body(ch, 0, FULL_MAX, 0, b"x"))
        check(not items and st == ST["BadRequest"], "§7.3", "a filter with mode 0")
        items, st, _ = c.stream(50, range_body(ch, 0, FULL_MAX, 1, b""))
        check(not items and st == ST["BadRequest"], "§7.3", "mode 1 with an empty filter")
        items, st, _ = c.stream(50, range_body(ch, 0, FULL_MAX, 1, b"f" * 4097))
        check(not items and st == ST["BadRequest"], "§7.3", "a filter over 4096 bytes")
        items, st, _ = c.stream(50, range_body(ch, 0, FULL_MAX, flags=1))
        check_eq(batch_records(items, code=2, compressed=False), all_recs, "§7.3",
                 "GetRange uncompressed batches (flags bit 0, item code 2)")
        items, st, _ = c.stream(50, range_body(ch, 0, FULL_MAX, flags=0))
        check_eq(batch_records(items), all_recs, "§7.3", "GetRange flags 0: LZ4 batches")
        for flags in (2, 0x80):
            items, st, _ = c.stream(50, range_body(ch, 0, FULL_MAX, flags=flags))
            check(not items and st == ST["BadRequest"], "§7.3", f"GetRange flags {flags}")
        items, st, _ = c.stream(50, range_body(ch, 0, FULL_MAX, flags=0) + b"x")
        check(not items and st == ST["BadRequest"], "§7.3", "a byte after the flags byte")
        items, st, rb = c.stream(50, range_body("nosuch", 0, FULL_MAX))
        check(not items and (st, rb) == (0, b""), "§7.3", "GetRange of a missing channel")
        items, st, _ = c.stream(50, range_body("bad name", 0, FULL_MAX))
        check(not items and st == ST["BadChannelName"], "§7.2", "GetRange bad channel name")
        ga = lambda mode, filt, flags=None: str8(ch) + u8(mode) + u32(len(filt)) + filt + (
            b"" if flags is None else u8(flags))
        items, st, rb = c.stream(51, ga(0, b""))
        check_eq((st, rb), (0, b""), "§7.3", "GetAll final Reply")
        check_eq(sorted(batch_records(items)), sorted(all_recs), "§7.3", "GetAll every record")
        items, st, _ = c.stream(51, ga(1, b"hello", 1))
        check_eq(batch_records(items, 2, False), [(100, b"hello world")], "§7.3",
                 "GetAll substring, uncompressed")
        items, st, _ = c.stream(51, ga(0, b"", 4))
        check(not items and st == ST["BadRequest"], "§7.3", "GetAll flags 4")
        r = ok_body(c.call(52), "§7.2", "GetChannels")
        names = [r.str8() for _ in range(r.u32())]
        check_eq((names, r.done()), (["logs"], True), "§7.2", "GetChannels")
        r = ok_body(c.call(53, str8(ch)), "§7.2", "GetChannelSize")
        buckets, nbytes = r.u64(), r.u64()
        # All keys are below 4096: one bucket (docs/formats.md), a 16-byte file header and a
        # 16-byte header per record; records still in the write buffer count.
        want = 16 + sum(16 + len(v) for _, v in all_recs)
        check_eq((buckets, nbytes, r.done()), (1, want, True), "§7.2",
                 "GetChannelSize buckets, bytes (header 16, 16 + value a record)")
        check_eq(c.call(53, str8("nosuch"))[1], bytes(16), "§7.2", "size of a missing channel")
        r = ok_body(c.call(54), "§7.2", "GetSize")
        check_eq((r.u64(), r.u64(), r.done()), (buckets, nbytes, True), "§7.2", "GetSize")
        check_eq(c.call(55, str8(ch)), (0, b""), "§7.2", "RemoveChannel")
        check_eq(c.call(55, str8(ch)), (0, b""), "§7.2", "RemoveChannel of a missing channel")
        check_eq(c.call(53, str8(ch))[1], bytes(16), "§7.2", "size after RemoveChannel")
        status_is(c.call(52, b"x"), "BadRequest", "§2", "GetChannels with a body")
        status_is(c.call(53, str8(ch) + b"x"), "BadRequest", "§2", "GetChannelSize with a byte after")
        c.close()
    finally:
        node.stop()


# ---------------------------------------------------------------------------------------------
# §8: queue

SIZE = struct.Struct("<QQQQ")


def qsize(c, code, body=b""):
    r = ok_body(c.call(code, body), "§8.2", f"size request {code}")
    s = SIZE.unpack(r.take(32))
    check(r.done(), "§8.2", "a size is exactly 4 x u64")
    return s


def rec_bytes(n):
    return (n + 16 + 7) // 8 * 8


def test_queue(bin_dir, tmp):
    cfg = "[queue]\nchannel_size_bytes = 4096\n"
    node = Node(bin_dir, "queuenode", KIND_QUEUE, tmp, "queue", config=cfg)
    try:
        test_handshake(node, KIND_QUEUE, KIND_LOGFILES)
        test_common(node, KIND_QUEUE, 48)
        c = Conn(node, kind=KIND_QUEUE)
        ch = "q"
        check_eq(c.call(80, str8(ch) + b"first"), (0, b""), "§8.2", "Push Ok empty")
        check_eq(c.call(80, str8(ch) + b"second!"), (0, b""), "§8.2", "Push")
        s = qsize(c, 83, str8(ch))
        check_eq(s, (2, 12, rec_bytes(5) + rec_bytes(7), 4096), "§8.2",
                 "GetChannelSize records, value_bytes, used_bytes, capacity_bytes")
        check_eq(qsize(c, 84), s, "§8.2", "GetSize over one channel")
        check_eq(qsize(c, 83, str8("nosuch")), (0, 0, 0, 0), "§8.2", "size of a missing channel")
        check_eq(c.call(81, str8(ch)), (0, b"first"), "§8.2", "Pop oldest")
        check_eq(c.call(81, str8(ch)), (0, b"second!"), "§8.2", "Pop next")
        check_eq(c.call(81, str8(ch)), (1, b""), "§8.2", "Pop empty: NotFound empty")
        check_eq(c.call(81, str8("nosuch")), (1, b""), "§8.2", "Pop missing: NotFound empty")
        r = ok_body(c.call(82), "§8.2", "GetChannels")
        names = [r.str8() for _ in range(r.u32())]
        check("nosuch" not in names and ch in names, "§8.2", f"Pop creates no channel: {names}")
        status_is(c.call(80, str8(ch) + b""), "EmptyValue", "§8.1", "Push empty")
        status_is(c.call(80, str8(ch) + b"v" * 1009), "ValueTooBig", "§8.1",
                  "Push of capacity/4 - 16 + 1 bytes")
        check_eq(c.call(80, str8(ch) + b"v" * 1008)[0], 0, "§8.1", "Push of capacity/4 - 16")
        c.call(81, str8(ch))
        status_is(c.call(80, str8("bad.name") + b"x"), "BadChannelName", "§8.1", "bad name")
        n = 0
        while True:
            st = c.call(80, str8("full") + b"x" * 1000)
            if st[0] != 0:
                status_is(st, "ChannelFull", "§8.1", "Push into a full ring")
                break
            n += 1
            if n > 10:
                check(False, "§8.1", "a 4096-byte ring took more than 10 records of 1000 bytes")
                break
        check_eq(n, 4096 // rec_bytes(1000), "§8.1", "records of 1000 bytes a 4096 ring holds")
        # PushMulti: all or nothing
        lst = lambda names: u8(len(names)) + b"".join(str8(x) for x in names)
        check_eq(c.call(86, lst(["m1", "m2", "m1"]) + b"multi"), (0, b""), "§8.3", "PushMulti")
        check_eq(qsize(c, 83, str8("m1"))[0], 1, "§8.2", "a list naming a channel twice writes once")
        check_eq(c.call(81, str8("m2")), (0, b"multi"), "§8.3", "PushMulti reached m2")
        status_is(c.call(86, lst(["m1", "full"]) + b"y" * 1000), "ChannelFull", "§8.3",
                  "PushMulti with one full target")
        check_eq(qsize(c, 83, str8("m1"))[0], 1, "§8.3", "refused PushMulti stored nothing")
        status_is(c.call(86, lst([]) + b"x"), "BadRequest", "§8.3", "PushMulti of 0 channels")
        status_is(c.call(86, lst(["c%d" % i for i in range(65)]) + b"x"), "BadRequest", "§8.3",
                  "PushMulti of 65 channels")
        # Produce
        vals = [(0, b"p%d" % i) for i in range(10)]
        r = ok_body(c.call(87, lst(["prod"]) + make_batch(vals)), "§8.5", "Produce")
        check_eq((r.u32(), r.done()), (10, True), "§8.5", "Produce stored")
        big = [(0, b"z" * 100)] * 3
        r = ok_body(c.call(87, lst(["full"]) + make_batch(big)), "§8.5", "Produce to a full ring")
        check_eq(r.u32(), 0, "§8.5", "Produce into a full ring stores 0, Ok")
        r = ok_body(c.call(87, lst(["prod-empty"]) + make_batch([])), "§4", "Produce empty batch")
        check_eq(r.u32(), 0, "§4", "an empty Produce stores 0")
        status_is(c.call(87, lst(["prod"]) + make_batch([(0, b"")])), "EmptyValue", "§8.5",
                  "Produce with an empty value")
        check_eq(qsize(c, 83, str8("prod"))[0], 10, "§8.5", "a refused Produce stored nothing")
        # Consume and ConsumeAck
        rid = c.send(88, str8("prod") + str8("") + u32(3))
        c.credit(rid, 100)
        items, rep = c.items_until(rid, 4)
        got = batch_records(items)
        check(rep is None and [len(b) for b in [parse_batch(x) for _, x in items]] == [3, 3, 3, 1],
              "§8.4", "Consume batches of at most max_batch_records")
        check_eq([v for _, v in got], [v for _, v in vals], "§8.4", "Consume values in order")
        seqs = [k for k, _ in got]
        check_eq(seqs, list(range(10)), "§8.4", "sequence numbers from 0, one more a record")
        status_is(c.call(89, u64(rid) + u64(11)), "BadRequest", "§8.4", "ack of more than sent")
        check_eq(c.call(89, u64(rid) + u64(4)), (0, b""), "§8.4", "ConsumeAck")
        check_eq(c.call(89, u64(rid) + u64(2)), (0, b""), "§8.4",
                 "a ConsumeAck of a smaller count than before: Ok, changes nothing")
        check_eq(c.call(89, u64(9999) + u64(1)), (1, b""), "§8.4", "ConsumeAck of no Consume")
        c.stop(rid)
        ftype, code, _, fid, fb = c.recv_frame()
        check_eq((ftype, code, fid, fb), (T_REPLY, 0, rid, b""), "§8.4", "Stop ends Consume Ok")
        check_eq(c.call(89, u64(rid) + u64(5)), (1, b""), "§8.4", "a late ack: NotFound")
        check_eq(qsize(c, 83, str8("prod"))[0], 6, "§8.4", "unacked records go back")
        check_eq(c.call(81, str8("prod")), (0, b"p4"), "§8.4", "unacked go back to the front")
        # Subscribe: the first takes over, the next starts empty
        check_eq(c.call(90, str8("sub") + str8("alice")), (0, b""), "§8.6", "Subscribe")
        check_eq(c.call(80, str8("sub") + b"x1"), (0, b""), "§8.1", "Push")
        check_eq(c.call(90, str8("sub") + str8("bob")), (0, b""), "§8.6", "Subscribe 2nd")
        check_eq(c.call(80, str8("sub") + b"x2"), (0, b""), "§8.1", "Push")
        check_eq(qsize(c, 83, str8("sub"))[0], 3, "§8.2", "a value counts once per subscriber")
        status_is(c.call(81, str8("sub")), "BadRequest", "§8.1",
                  "Pop of a channel whose subscribers all have names")
        status_is(c.call(90, str8("sub") + str8("b c")), "BadChannelName", "§8.1", "subscriber name")
        items, st, _ = c.stream(88, str8("sub") + str8("bad!") + u32(0))
        check(not items and st == ST["BadChannelName"], "§8.2", "Consume bad subscriber")
        rid = c.send(88, str8("sub") + str8("bob") + u32(0))
        items, rep = c.items_until(rid, 1)
        check_eq(batch_records(items)[0], (0, b"x2"), "§8.1",
                 "bob has only what came after, numbered from 0 in his storage")
        c.call(85, str8("sub"))
        ftype, code, _, fid, fb = c.recv_frame()
        check_eq((ftype, code, fid, fb), (T_REPLY, 0, rid, b""), "§8.4",
                 "RemoveChannel ends Consume with Ok")
        check_eq(c.call(85, str8("never")), (0, b""), "§8.2", "RemoveChannel of a missing channel")
        status_is(c.call(89, u64(1)), "BadRequest", "§3.1", "ConsumeAck cut short")
        # Pop reads the default subscriber's storage once the channel has subscribers.
        check_eq(c.call(90, str8("ds") + str8("")), (0, b""), "§8.6", "Subscribe the default")
        check_eq(c.call(90, str8("ds") + str8("named")), (0, b""), "§8.6", "Subscribe a name")
        check_eq(c.call(90, str8("ds") + str8("named")), (0, b""), "§8.6", "the same name again")
        check_eq(c.call(80, str8("ds") + b"d1"), (0, b""), "§8.1", "Push")
        check_eq(qsize(c, 83, str8("ds"))[0], 2, "§8.6",
                 "a name subscribed twice is one storage: the value counts twice, not three times")
        check_eq(c.call(81, str8("ds")), (0, b"d1"), "§8.1", "Pop reads the default subscriber's")
        check_eq(qsize(c, 83, str8("ds"))[0], 1, "§8.1", "the named subscriber keeps its copy")
        # A dropped connection gives its Consume's unacknowledged records back.
        check_eq(c.call(80, str8("drop") + b"r1"), (0, b""), "§8.1", "Push")
        d = Conn(node, kind=KIND_QUEUE)
        rid = d.send(88, str8("drop") + str8("") + u32(0))
        items, rep = d.items_until(rid, 1)
        check(rep is None and batch_records(items)[0][1] == b"r1", "§8.4", "Consume")
        d.close()
        deadline = time.time() + 5
        popped = c.call(81, str8("drop"))
        while time.time() < deadline and popped[0] == ST["NotFound"]:
            # The node may not have seen the connection go yet.
            time.sleep(0.05)
            popped = c.call(81, str8("drop"))
        check_eq(popped, (0, b"r1"), "§8.4", "a dropped connection's unacknowledged record goes back")
        status_is(c.call(91), "UnsupportedRequest", "§8.2", "reserved queue code 91")
        c.close()
        reuse_open_id(node, KIND_QUEUE, 88, str8("reuseq") + str8("") + u32(0))
    finally:
        node.stop()


# ---------------------------------------------------------------------------------------------
# Limits, catch-up, half-close and shutdown (§1.1, §2, §2.2, §2.3, §6.1, §6.4, §6.11, §6.13)


def test_connection_limits(bin_dir, tmp):
    cfg = "[server]\nmax_connections = 2\nmax_in_flight = 4\n"
    node = Node(bin_dir, "dhtnode", KIND_DHT, tmp, "dht-limits", config=cfg)
    try:
        a = Conn(node, kind=KIND_DHT)
        b = Conn(node, kind=KIND_DHT)
        c = Conn(node, handshake=False)
        _, _, _, verdict, _ = c.server_hello()
        check_eq(verdict, 4, "§1.1", "verdict ConnectionLimit beyond max_connections")
        check(c.closed_by_node(), "§1.1", "the node closes right after a ConnectionLimit hello")
        c.close()
        b.close()
        deadline = time.time() + 5
        verdict = None
        while time.time() < deadline:
            c = Conn(node, handshake=False)
            verdict = c.server_hello()[3]
            if verdict == 0:
                break
            c.close()
            time.sleep(0.1)
        check_eq(verdict, 0, "§2.3", "a connection is accepted again once one closed")
        c.close()
        ids = [a.send(27, str8("lim%d" % i)) for i in range(4)]
        time.sleep(0.2)
        status_is(a.call(1), "TooManyRequests", "§2", "a request beyond max_in_flight open ones")
        a.stop(ids[0])
        check_eq(a.reply_for(ids[0]), (0, b""), "§2.2", "Stop of a Listen: Ok empty")
        status_is(a.call(1), "Ok", "§2", "a request once an open one ended")
        # Half-close: the node answers what it read, then closes, ending streams without a Reply.
        rid = a.send(1)
        a.sock.shutdown(socket.SHUT_WR)
        ftype, st, _, fid, _ = a.recv_frame()
        check_eq((ftype, st, fid), (T_REPLY, 0, rid), "§2.2", "a request before a half-close")
        check(a.closed_by_node(), "§2.2", "half-close: the node closes without stream Replies")
        a.close()
    finally:
        node.stop()


def test_dht_limits(bin_dir, tmp):
    cfg = ("[server]\nstream_memory_bytes = 262144\n"
           "[dht]\nmax_channels = 2\nsize_limit_bytes = 100\ntombstone_limit = 2\n"
           "listen_queue_events = 4\n")
    node = Node(bin_dir, "dhtnode", KIND_DHT, tmp, "dht-limits2", config=cfg)
    try:
        c = Conn(node, kind=KIND_DHT)
        check_eq(c.call(16, str8("a") + u64(1) + b"x")[0], 0, "§6.1", "Put")
        check_eq(c.call(16, str8("b") + u64(1) + b"x")[0], 0, "§6.1", "Put")
        status_is(c.call(16, str8("c") + u64(1) + b"x"), "OutOfMemory", "§6.1",
                  "a Put creating a channel beyond max_channels")
        status_is(c.call(34, str8("c") + u64(1) + u64(1)), "OutOfMemory", "§6.11",
                  "a RemoveVersion creating a channel beyond max_channels")
        for code, zeros in ((26, 1), (39, 2), (30, 2), (38, 2)):
            st, body = c.call(code, str8("c") + make_batch([]))
            check(st == 0 and body[:8 * zeros] == bytes(8 * zeros), "§4",
                  f"an empty batch (request {code}) for a new channel at max_channels: Ok 0"
                  f" (got {ST_NAME.get(st, st)} {body[:80]!r})")
            status_is(c.call(code, str8("c d") + make_batch([])), "BadChannelName", "§4",
                      f"an empty batch (request {code}) for a bad channel name")
            status_is(c.call(code, str8("c") + make_batch([(1, u64(3) + b"v")])), "OutOfMemory",
                      "§6.1", f"a batch (request {code}) creating a channel beyond max_channels")
        status_is(c.call(16, str8("a") + u64(2) + b"v" * 90), "OutOfMemory", "§6.1",
                  "a Put beyond size_limit_bytes")
        check_eq(c.call(34, str8("a") + u64(5) + u64(1)), (0, b"\x01"), "§6.11", "tombstone 1")
        check_eq(c.call(34, str8("a") + u64(6) + u64(1)), (0, b"\x01"), "§6.11", "tombstone 2")
        st = c.call(34, str8("a") + u64(7) + u64(1))
        status_is(st, "OutOfMemory", "§6.11", "a tombstone beyond tombstone_limit")
        check(b"tombstone_limit" in st[1], "§6.11", f"the message names the setting: {st[1]!r}")
        rid = c.send(27, str8("c"))
        check(c.quiet(0.3), "§6.4", "a Listen on a new channel beyond max_channels waits")
        c.stop(rid)
        st = c.reply_for(rid)
        check_eq(st, (0, b""), "§6.4", "the waiting Listen stops with Ok")
        # Overflow: a listener that gets no credit loses changes and is told how many.
        lc = Conn(node, kind=KIND_DHT)
        c.call(24, str8("b"))
        c.call(24, str8("a"))
        rid = lc.send(27, str8("lq"))
        time.sleep(0.2)
        made = 0
        for k in range(10):
            made += c.call(16, str8("lq") + u64(100 + k) + b"v")[0] == 0
        time.sleep(0.3)
        lc.credit(rid, 100)
        changed = lost = 0
        while not lc.quiet(0.5) or lc.buf:
            ftype, code, _, fid, fb = lc.recv_frame()
            if code == 1:
                changed += 1
            elif code == 3:
                r = Reader(fb)
                lost += r.u64()
                check(r.done(), "§6.4", "Overflow body: u64 lost")
        check(made == 10 and lost > 0 and changed + lost == made, "§6.4",
              f"Overflow: {changed} changes sent + {lost} lost = {made} made of 10")
        lc.close()
        # Stream memory: Mirrors (about 8 KiB each) until the connection's budget.
        n = 0
        msg = b""
        while n < 100:
            rid = c.send(36, str8("a") + u8(0) + u32(0))
            if not c.quiet(0.05):
                ftype, st, _, fid, msg = c.recv_frame()
                check_eq((ftype, fid, st), (T_REPLY, rid, ST["TooManyRequests"]), "§2.2",
                         "a stream beyond stream_memory_bytes")
                break
            n += 1
        check(20 <= n <= 40, "§2.2", f"{n} Mirrors of about 8 KiB fill a 256 KiB budget")
        check(b"stream_memory_bytes" in msg, "§2.2", f"the message names the setting: {msg!r}")
        status_is(c.call(1), "Ok", "§2.2", "other requests are served")
        c.close()
    finally:
        node.stop()


def test_dht_catch_up(bin_dir, tmp):
    # A peer nobody listens on: the node stays catching up until SetReady.
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    dead = "127.0.0.1:%d" % probe.getsockname()[1]
    probe.close()
    cfg = f'[dht]\nreplica_peers = ["{dead}"]\n'
    node = Node(bin_dir, "dhtnode", KIND_DHT, tmp, "dht-catchup", config=cfg)
    try:
        c = Conn(node, kind=KIND_DHT)
        check_eq(c.call(16, str8("a") + u64(1) + b"x"), (0, b""), "§6.13", "a write while catching up")
        for code, body, name in ((17, str8("a") + u64(1), "Get"), (18, str8("a") + u64(1), "Exists"),
                                 (35, str8("a") + u64(1), "GetWithVersion"),
                                 (28, str8("a") + u64(1) + u8(0) + u64(0) + u8(1) + b"y", "Update"),
                                 (17, b"\xff", "Get with a bad body (before its body)")):
            status_is(c.call(code, body), "NotReady", "§6.13", f"{name} while catching up")
        items, st, _ = c.stream(20, get_all_body("a"))
        check(not items and st == ST["NotReady"], "§6.13", "GetAll while catching up")
        r = ok_body(c.call(22, str8("a")), "§6.13", "GetChannelSize while catching up")
        check_eq(r.u64(), 1, "§6.13", "sizes are served while catching up")
        r = ok_body(c.call(3), "§6.13", "GetStats")
        stats = {}
        for _ in range(r.u32()):
            name = r.str8()
            stats[name] = r.u64()
        check_eq(stats.get("catch_up_state"), 1, "§6.13", "catch_up_state while catching up")
        rid = c.send(27, str8("a"))
        rid2 = c.send(36, str8("a") + u8(1) + u32(0))
        c.credit(rid2, 10)
        items, rep = c.items_until(rid2, 3)
        check(rep is None and [code for code, _ in items] == [4, 5, 6], "§6.13",
              "a Mirror with refresh is served while catching up")
        check(c.quiet(0.2), "§6.13", "a Listen is accepted while catching up")
        for r_ in (rid, rid2):
            c.stop(r_)
            c.reply_for(r_)
        check_eq(c.call(37), (0, b"\x01"), "§6.13", "SetReady: state before 1")
        check_eq(c.call(17, str8("a") + u64(1)), (0, b"x"), "§6.13", "Get once forced ready")
        check_eq(c.call(37), (0, b"\x02"), "§6.13", "SetReady again: state before 2")
        c.close()
    finally:
        node.stop()


def test_shutdown(bin_dir, tmp):
    node = Node(bin_dir, "dhtnode", KIND_DHT, tmp, "dht-shutdown")
    c = Conn(node, kind=KIND_DHT)
    rid = c.send(27, str8("s"))
    time.sleep(0.2)
    node.proc.send_signal(signal.SIGTERM)
    try:
        ftype, st, _, fid, fb = c.recv_frame()
        check_eq((ftype, fid, st), (T_REPLY, rid, ST["ShuttingDown"]), "§2.2",
                 "a graceful shutdown ends a stream with ShuttingDown")
    except (Closed, socket.timeout) as e:
        check(False, "§2.2", f"no ShuttingDown Reply for a running stream ({e})")
    c.close()
    node.stop()


def test_mirror_period(node):
    """§6.12: without the refresh flag, the first refresh comes one period after the start."""
    m = Conn(node, kind=KIND_DHT)
    w = Conn(node, kind=KIND_DHT)
    w.call(16, str8("per") + u64(1) + b"x")
    start = time.time()
    rid = m.send(36, str8("per") + u8(0) + u32(1))
    m.credit(rid, 100)
    items, rep = m.items_until(rid, 3, timeout=5)
    took = time.time() - start
    check_eq([c for c, _ in items], [4, 5, 6], "§6.12", "a periodic refresh's items")
    check(0.8 <= took <= 3, "§6.12", f"the first periodic refresh after about 1 s ({took:.2f} s)")
    m.stop(rid)
    m.reply_for(rid)
    m.close()
    w.close()


def test_logfiles_limits(bin_dir, tmp):
    node = Node(bin_dir, "logfilesnode", KIND_LOGFILES, tmp, "logfiles-limits",
                config="[logfiles]\nmax_channels = 2\n")
    try:
        c = Conn(node, kind=KIND_LOGFILES)
        check_eq(c.call(48, str8("a") + u64(1) + b"x"), (0, b""), "§7.2", "Put")
        recs = [(i, b"line %06d " % i + b"x" * 200) for i in range(3000)]
        for j in range(0, 3000, 500):
            c.call(49, str8("b") + make_batch(recs[j:j + 500]))
        status_is(c.call(48, str8("c") + u64(1) + b"x"), "OutOfMemory", "§7.1",
                  "a Put creating a channel beyond max_channels")
        status_is(c.call(49, str8("c") + make_batch([(1, b"x")])), "OutOfMemory", "§7.1",
                  "a PutBatch creating a channel beyond max_channels")
        check_eq(c.call(49, str8("c") + make_batch([])), (0, bytes(8)), "§4",
                 "an empty PutBatch for a new channel at max_channels: Ok 0")
        status_is(c.call(49, str8("c d") + make_batch([])), "BadChannelName", "§4",
                  "an empty PutBatch for a bad channel name")
        rid = c.send(50, range_body("b", 0, FULL_MAX))
        items, rep = c.items_until(rid, 4)
        check(rep is None and len(items) == 4, "§2.2", "a read paused after its credit of 4")
        d = Conn(node, kind=KIND_LOGFILES)
        check_eq(d.call(55, str8("b")), (0, b""), "§7.2", "RemoveChannel during a read")
        c.credit(rid, 1000)
        more = 0
        while True:
            ftype, st, _, fid, fb = c.recv_frame()
            if ftype == T_REPLY:
                check_eq((fid, st, fb), (rid, 0, b""), "§7.2", "a running read ends with Ok")
                break
            more += 1
        got = len(batch_records(items)) + more
        check(more < 30, "§7.2", f"the read of a removed channel ended early ({more} items more)")
        d.close()
        c.close()
    finally:
        node.stop()


def test_queue_limits(bin_dir, tmp):
    cfg = ("[server]\nmax_in_flight = 2\n"
           "[queue]\nchannel_size_bytes = 65536\nmemory_limit_bytes = 196608\n")
    node = Node(bin_dir, "queuenode", KIND_QUEUE, tmp, "queue-limits", config=cfg)
    try:
        c = Conn(node, kind=KIND_QUEUE)
        lst = lambda names: u8(len(names)) + b"".join(str8(x) for x in names)
        vals = [(77, b"v%d" % i) for i in range(20)]
        r = ok_body(c.call(87, lst(["p"]) + make_batch(vals)), "§8.5", "Produce (keys ignored)")
        check_eq(r.u32(), 20, "§8.5", "Produce stored")
        rid = c.send(88, str8("p") + str8("") + u32(1))
        c.credit(rid, 100)
        items, rep = c.items_until(rid, 8)
        check(rep is None and c.quiet(0.3), "§8.4", "a Consume pauses at 8 unacknowledged batches")
        status_is(c.call(1), "Ok", "§2", "a request while one stream is open (max_in_flight 2)")
        check_eq(c.call(89, u64(rid) + u64(3)), (0, b""), "§8.4", "ConsumeAck")
        more, rep = c.items_until(rid, 3)
        check(rep is None and c.quiet(0.3), "§8.4", "an ack of 3 lets 3 more batches come")
        first = batch_records(items + more)
        check_eq([v for _, v in first], [v for _, v in vals[:11]], "§8.4", "values in order")
        rid2 = c.send(88, str8("p2") + str8("") + u32(0))
        status_is(c.call(1), "TooManyRequests", "§2", "a request beyond max_in_flight")
        check_eq(c.call(89, u64(rid) + u64(4)), (0, b""), "§2",
                 "a ConsumeAck is never refused for max_in_flight")
        for r_ in (rid, rid2):
            c.stop(r_)
            check_eq(c.reply_for(r_), (0, b""), "§8.4", "Stop ends a Consume with Ok")
        rid = c.send(88, str8("p") + str8("") + u32(0))
        c.credit(rid, 100)
        items, rep = c.items_until(rid, 1)
        again = batch_records(items)
        check_eq([v for _, v in again], [v for _, v in vals[4:]], "§8.4",
                 "unacknowledged records come back first; max_batch_records 0 means 4096")
        check_eq([k for k, _ in again[:7]], [k for k, _ in first[4:11]], "§8.4",
                 "a record delivered again keeps its sequence number")
        c.stop(rid)
        c.reply_for(rid)
        c.close()
        c = Conn(node, kind=KIND_QUEUE)
        status_is(c.call(80, str8("q3") + b"x"), "Ok", "§8.1", "a third ring of 3 the limit allows")
        status_is(c.call(80, str8("q4") + b"x"), "OutOfMemory", "§8.1",
                  "a Push needing a ring beyond memory_limit_bytes")
        check_eq(c.call(87, lst(["q5"]) + make_batch([])), (0, bytes(4)), "§4",
                 "an empty Produce for a new channel at memory_limit_bytes: Ok 0")
        status_is(c.call(87, lst(["q 5"]) + make_batch([])), "BadChannelName", "§4",
                  "an empty Produce for a bad channel name")
        status_is(c.call(90, str8("p") + str8("s3")), "OutOfMemory", "§8.6",
                  "a Subscribe whose ring would pass memory_limit_bytes")
        items, st, _ = c.stream(88, str8("p") + str8("s4") + u32(0))
        check(not items and st == ST["OutOfMemory"], "§8.2", "a Consume of a new subscriber")
        c.close()
    finally:
        node.stop()


def test_queue_default_value_limit(bin_dir, tmp):
    node = Node(bin_dir, "queuenode", KIND_QUEUE, tmp, "queue-default")
    try:
        c = Conn(node, kind=KIND_QUEUE)
        status_is(c.call(80, str8("big") + b"v" * 16711617), "ValueTooBig", "§8.1",
                  "a Push of 16 711 617 bytes with the defaults")
        status_is(c.call(80, str8("big") + b"v" * 16711616), "Ok", "§8.1",
                  "a Push of 16 711 616 bytes with the defaults")
        c.close()
    finally:
        node.stop()


def test_durability_always(bin_dir, tmp):
    """§2, §6.10, §7.4: writes that wait for their fsync are answered once it is done."""
    node = Node(bin_dir, "dhtnode", KIND_DHT, tmp, "dht-always",
                config='[dht]\ndurability = "always"\n')
    try:
        c = Conn(node, kind=KIND_DHT)
        check_eq(c.call(16, str8("a") + u64(1) + b"x"), (0, b""), "§6.10", "Put under always")
        check_eq(c.call(19, str8("a") + u64(1)), (0, b""), "§6.10", "Remove under always")
        check_eq(c.call(26, str8("a") + make_batch([(2, b"y")])), (0, u64(1)), "§6.10",
                 "PutBatch under always")
        check_eq(c.call(33, str8("a") + u64(2) + u64(0) + b"z"), (0, b"\x00"), "§6.10",
                 "a PutVersion that changes nothing under always")
        check_eq(c.call(24, str8("a")), (0, b""), "§6.10", "RemoveChannel under always")
        c.close()
    finally:
        node.stop()
    node = Node(bin_dir, "logfilesnode", KIND_LOGFILES, tmp, "logfiles-always",
                config='[logfiles]\nfsync = "always"\n')
    try:
        c = Conn(node, kind=KIND_LOGFILES)
        ids = [c.send(48, str8("a") + u64(k) + b"line") for k in range(20)]
        got = [c.reply_for(i) for i in ids]
        check(all(g == (0, b"") for g in got), "§7.4", "20 pipelined Puts under always: Ok")
        items, st, _ = c.stream(50, range_body("a", 0, FULL_MAX))
        check_eq(len(batch_records(items)), 20, "§7.4", "a read sees every acknowledged Put")
        c.close()
    finally:
        node.stop()


def test_tls(bin_dir, tmp):
    """§1: with [tls], the whole protocol runs inside TLS unchanged; nothing in clear."""
    d = os.path.join(tmp, "tls")
    os.makedirs(d)
    cert, key = os.path.join(d, "node.pem"), os.path.join(d, "node-key.pem")
    made = subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
         "-nodes", "-keyout", key, "-out", cert, "-days", "1", "-subj", "/CN=swarm-conformance",
         "-addext", "subjectAltName=IP:127.0.0.1"], capture_output=True)
    if not check(made.returncode == 0, "tls", "openssl makes a test certificate "
                 f"(needs the openssl program): {made.stderr[-300:]!r}"):
        return
    os.chmod(key, 0o600)
    ctx = ssl.create_default_context(cafile=cert)
    for binary, kind in (("dhtnode", KIND_DHT), ("logfilesnode", KIND_LOGFILES),
                         ("queuenode", KIND_QUEUE)):
        node = Node(bin_dir, binary, kind, tmp, f"{binary}-tls",
                    config=f'[tls]\ncert_file = "{cert}"\nkey_file = "{key}"\n')
        try:
            c = Conn(node, kind=kind, tls=ctx)
            check(c.sock.version() in ("TLSv1.2", "TLSv1.3"), "§1",
                  f"{binary}: TLS 1.2 or 1.3 ({c.sock.version()})")
            check_eq(c.result, (OK_MAGIC, 0, 1, 0), "§1", f"{binary}: the handshake inside TLS")
            r = ok_body(c.call(1), "§1", f"{binary}: GetVersion inside TLS")
            check_eq((r.u16(), r.u8()), (1, kind), "§5", f"{binary}: GetVersion over TLS")
            c.close()
            plain = socket.create_connection(node.addr, timeout=10)
            plain.settimeout(1)
            try:
                first = plain.recv(40)
            except socket.timeout:
                first = b""
            check(not first.startswith(MAGIC), "§1",
                  f"{binary}: a node with TLS sends no hello in clear ({first[:8]!r})")
            plain.close()
        finally:
            node.stop()


# ---------------------------------------------------------------------------------------------
# §6.10, §7.4: a full disk under the dht change log and the logfiles buckets

SKIP_VAR = "SWARM_TEST_ALLOW_SKIP"
# --no-mount: use the file-size limit even where mounting works (to exercise that path).
NO_MOUNT = [False]


def skip_allowed(capability):
    words = [w.strip() for w in os.environ.get(SKIP_VAR, "").split(",")]
    return "all" in words or capability in words


class SmallDisk:
    """A full disk for a node's data directory: a tmpfs of `size` mounted at `path`. Where this
    process may not mount (not root), and only where SWARM_TEST_ALLOW_SKIP names `mount`, a
    file-size limit on the node process fails its writes the same way (EFBIG instead of ENOSPC,
    SIGXFSZ ignored), and the check of a real full file system is recorded as skipped; without
    the variable that is a failure, never a silent skip."""

    def __init__(self, path, size_bytes, fallback=True):
        self.path = path
        self.size_bytes = size_bytes
        self.fallback = fallback
        os.makedirs(path)
        reason = "--no-mount given"
        if not NO_MOUNT[0]:
            made = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_bytes}", "tmpfs",
                                   path], capture_output=True, text=True)
            self.mounted = made.returncode == 0
            reason = made.stderr.strip()[-200:]
        else:
            self.mounted = False
        if self.mounted:
            return
        what = f"a real full file system under {os.path.basename(os.path.dirname(path))}" + \
            (" (a file-size limit stood in)" if fallback else "")
        if not NO_MOUNT[0] and not skip_allowed("mount"):
            raise RuntimeError(f"cannot mount a tmpfs ({reason}); run as root, or set "
                               f"{SKIP_VAR}=mount to fill the disk with a file-size limit instead")
        print(f"SKIPPED mount: {what}: {reason}")

    def usable(self):
        """Whether the checks can run: on a tmpfs, or under the file-size limit where it can
        stand in (not under the dht change log, which counts EFBIG as an I/O error, §6.10)."""
        return self.mounted or self.fallback

    def preexec(self):
        """For the node process: under the file-size limit when no tmpfs is mounted."""
        if not self.mounted:
            import resource
            signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
            hard = resource.getrlimit(resource.RLIMIT_FSIZE)[1]
            resource.setrlimit(resource.RLIMIT_FSIZE, (self.size_bytes, hard))

    def give_space(self, node):
        if self.mounted:
            subprocess.run(["mount", "-o", "remount,size=64m", self.path], check=True)
        else:
            import resource
            hard = resource.prlimit(node.proc.pid, resource.RLIMIT_FSIZE)[1]
            resource.prlimit(node.proc.pid, resource.RLIMIT_FSIZE, (hard, hard))

    def close(self):
        if self.mounted:
            subprocess.run(["umount", "-l", self.path], capture_output=True)


@contextlib.contextmanager
def node_on_small_disk(bin_dir, tmp, name, binary, kind, config, fallback=True):
    """A node whose data directory is a 1 MiB SmallDisk: (disk, node), node None when this
    machine cannot run the checks (recorded as skipped); both are gone afterwards."""
    disk = SmallDisk(os.path.join(tmp, name, "data"), 1 << 20, fallback)
    node = None
    try:
        if disk.usable():
            node = Node(bin_dir, binary, kind, tmp, name, config=config, preexec=disk.preexec)
        yield disk, node
    finally:
        if node is not None:
            node.stop()
        disk.close()


def until_ok(write, seconds=5):
    """Repeats `write()` until its reply is Ok or `seconds` pass; returns the last reply."""
    deadline = time.time() + seconds
    got = write()
    while got[0] != 0 and time.time() < deadline:
        time.sleep(0.1)
        got = write()
    return got


def check_same(got, want, section, what):
    """check_eq for long lists and dicts of keys: a failure names only the differences."""
    if isinstance(want, dict):
        diff = {k: (got.get(k), want.get(k)) for k in set(got) | set(want)
                if got.get(k) != want.get(k)}
    else:
        diff = {"only got": sorted(set(got) - set(want)), "only wanted":
                sorted(set(want) - set(got))}
    return check(got == want, section, f"{what}: differences (got, want) {diff}")


def msg(got):
    return got[1].decode(errors="replace")


def put_until_refused(c, code, body_of, limit=3000):
    """Writes key 0, 1, ... until one is refused: (keys acknowledged, the refused key, reply)."""
    acked = []
    for key in range(limit):
        got = c.call(code, body_of(key))
        if got[0] != 0:
            return acked, key, got
        acked.append(key)
    raise RuntimeError(f"the disk did not fill up: {limit} writes acknowledged")


def dht_value(key):
    return b"%08d" % key + b"v" * 4088


def dht_disk_full(bin_dir, tmp, durability):
    """§6.10: a change the log cannot take is InternalError and not applied; reads go on; once
    there is room, writes are taken again without a restart."""
    name = f"dht-full-{durability}"
    config = f'[dht]\ndurability = "{durability}"\ndump_period_s = 0\n'
    with node_on_small_disk(bin_dir, tmp, name, "dhtnode", KIND_DHT, config,
                            False) as (disk, node):
        if node is None:
            return
        c = Conn(node, kind=KIND_DHT)
        put = lambda key: str8("full") + u64(key) + dht_value(key)
        acked, refused, got = put_until_refused(c, 16, put)
        what = f"durability {durability}"
        status_is(got, "InternalError", "§6.10", f"{what}: a Put the full log cannot take")
        check(msg(got).startswith("the change log cannot take the change, so nothing was stored"),
              "§6.10", f"{what}: the message names the cause: {msg(got)!r}")
        check(len(acked) >= 10, "§6.10", f"{what}: {len(acked)} Puts fit before the disk filled")
        # Not applied; reads go on; every kind of change is refused the same way.
        check_eq(c.call(17, str8("full") + u64(refused)), (1, b""), "§6.10",
                 f"{what}: the refused Put is not applied")
        check(c.call(17, str8("full") + u64(acked[0])) == (0, dht_value(acked[0])), "§6.10",
              f"{what}: reads go on with the disk full")
        items, st, _ = c.stream(20, get_all_body("full"))
        check_eq(st, 0, "§6.10", f"{what}: GetAll on the full disk")
        check_same(sorted(k for k, _ in batch_records(items)), acked, "§6.10",
                   f"{what}: GetAll returns exactly the acknowledged Puts")
        # Changes at least as large as the refused Put (a smaller one may still fit the log).
        big = dht_value(refused)
        for code, body, label in (
                (26, str8("full") + make_batch([(refused, big), (refused + 1, big)]), "PutBatch"),
                (33, str8("full") + u64(refused) + u64(5) + big, "PutVersion"),
                (28, str8("full") + u64(refused) + u8(0) + u64(0) + u8(1) + big, "Update")):
            got = c.call(code, body)
            status_is(got, "InternalError", "§6.10", f"{what}: a {label} on the full disk")
            check(b"nothing was stored" in got[1], "§6.10", f"{what}: {label}: {msg(got)!r}")
        for key in (refused, refused + 1):
            check_eq(c.call(17, str8("full") + u64(key)), (1, b""), "§6.10",
                     f"{what}: key {key} of the refused changes is absent")
        # Space returns: changes are taken again, without a restart.
        disk.give_space(node)
        until_ok(lambda: c.call(16, put(refused)))
        check(c.call(17, str8("full") + u64(refused)) == (0, dht_value(refused)), "§6.10",
              f"{what}: writes succeed again once there is room")
        c.close()
        node.stop()
        if durability == "interval":
            dht_start_on_full_disk(bin_dir, tmp, name, disk, acked + [refused])


def fill_up(path):
    """Fills the file system of `path` with a file `filler` until not one more byte fits."""
    fd = os.open(os.path.join(path, "filler"), os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        for size in (1 << 20, 4096, 1):
            chunk = bytes(size)
            try:
                for _ in range(1 << 20):
                    os.write(fd, chunk)
            except OSError:
                pass
    finally:
        os.close(fd)


def dht_start_on_full_disk(bin_dir, tmp, name, disk, held):
    """§6.10: a node started on a full disk serves reads and refuses every change until there is
    room for its log, then takes changes without a restart."""
    fill_up(disk.path)
    os.remove(os.path.join(tmp, name, "log", "root.log"))  # the next "listening on" is the new one
    node = Node(bin_dir, "dhtnode", KIND_DHT, tmp, name, config='[dht]\ndump_period_s = 0\n')
    try:
        dht_full_from_the_start(node, disk, held)
    finally:
        node.stop()


def dht_full_from_the_start(node, disk, held):
    c = Conn(node, kind=KIND_DHT)
    what = "a node started on a full disk"
    check(c.call(17, str8("full") + u64(held[-1])) == (0, dht_value(held[-1])), "§6.10",
          f"{what} serves reads")
    got = c.call(16, str8("full") + u64(1 << 40) + b"x")
    status_is(got, "InternalError", "§6.10", f"{what} refuses a change")
    check(b"nothing was stored" in got[1], "§6.10", f"{what}: the message: {msg(got)!r}")
    check_eq(c.call(17, str8("full") + u64(1 << 40)), (1, b""), "§6.10",
             f"{what}: the refused change is not applied")
    os.remove(os.path.join(disk.path, "filler"))
    until_ok(lambda: c.call(16, str8("full") + u64(1 << 40) + b"x"))
    check_eq(c.call(17, str8("full") + u64(1 << 40)), (0, b"x"), "§6.10",
             f"{what} takes changes once there is room, without a restart")
    c.close()


def logfiles_disk_full(bin_dir, tmp, fsync):
    """§7.4: InternalError stores nothing, now or later; NotDurable stores exactly the records its
    message counts; reads go on; writes resume once there is room."""
    name = f"logfiles-full-{fsync}"
    config = f'[logfiles]\nfsync = "{fsync}"\nwrite_buffer_bytes = 16384\n'
    what = f"fsync {fsync}"
    value = lambda key: b"%08d" % key + b"l" * 1992
    batch = lambda keys: str8("full") + make_batch([(k, value(k)) for k in keys])
    with node_on_small_disk(bin_dir, tmp, name, "logfilesnode", KIND_LOGFILES,
                            config) as (disk, node):
        c = Conn(node, kind=KIND_LOGFILES)
        expect = {}  # key -> 1: what the replies say is stored
        partly = []  # (keys, n): a NotDurable PutBatch and the records it says it stored
        answers = {}

        def put_batch(keys):
            """A PutBatch larger than the write buffer (20 records of 2000 bytes): Ok, nothing
            (InternalError) or the N of M its NotDurable message counts. Returns the status."""
            got = c.call(49, batch(keys))
            answers[ST_NAME.get(got[0], got[0])] = answers.get(ST_NAME.get(got[0], got[0]), 0) + 1
            if got[0] == 0:
                check_eq(got[1], u64(len(keys)), "§7.2", f"{what}: PutBatch Ok body")
                expect.update({k: 1 for k in keys})
            elif got[0] == ST["NotDurable"]:
                m = re.match(r"stored (\d+) of 20 records \(the others were not: |stored but not "
                             r"made durable: ", msg(got))
                if check(m is not None, "§7.4", f"{what}: NotDurable message {msg(got)!r}"):
                    partly.append((keys, int(m.group(1)) if m.group(1) else len(keys)))
            else:
                status_is(got, "InternalError", "§7.4", f"{what}: a PutBatch on the full disk")
            return got[0]

        key = 0
        while put_batch(list(range(key, key + 20))) == 0 and key < 2000:
            key += 20
        key += 20
        acked, refused, got = put_until_refused(
            c, 48, lambda k: str8("full") + u64(key + k) + value(key + k))
        expect.update({key + k: 1 for k in acked})
        status_is(got, "InternalError", "§7.4", f"{what}: a Put on the full disk")
        key += refused + 1
        for _ in range(2):
            put_batch(list(range(key, key + 20)))
            key += 20
        print(f"{what}: PutBatch answers on a filling disk: {answers}")

        def stored():
            items, st, _ = c.stream(51, str8("full") + u8(0) + u32(0) + u8(1))
            check_eq(st, 0, "§7.3", f"{what}: GetAll")
            counts = {}
            for k, _ in batch_records(items, code=2, compressed=False):
                counts[k] = counts.get(k, 0) + 1
            for keys, n in partly:
                found = [counts.pop(k, 0) for k in keys]
                check(sum(found) == n and max(found) <= 1, "§7.4", f"{what}: a PutBatch answered "
                      f"NotDurable with {n} stored: {sum(found)} found")
            return counts

        got = stored()
        if fsync == "always":
            check_same(got, expect, "§7.4",
                       f"{what}: reads go on and return exactly what the replies said is stored")
        else:  # acknowledged records still in the write buffer may be missing until written
            check(all(expect.get(k) == n for k, n in got.items()), "§7.4",
                  f"{what}: reads go on and return only records stored, once each: "
                  f"{sorted(k for k, n in got.items() if expect.get(k) != n)} are not")
        disk.give_space(node)
        got = until_ok(lambda: c.call(48, str8("full") + u64(key) + value(key)))
        status_is(got, "Ok", "§7.4", f"{what}: Puts succeed once there is room")
        expect[key] = 1
        time.sleep(0.5)  # past flush_interval_ms (250): what was taken back stays out
        check_same(stored(), expect, "§7.4", f"{what}: once there is room, nothing refused "
                   "appears later and every acknowledged record is there once")
        c.close()


def queue_disk_full(bin_dir, tmp):
    """§8.1: a ring file that cannot be created fails the write with InternalError naming the
    file; existing channels go on; once there is room, new channels work."""
    # No file-size limit here: ring files are memory-mapped, a full disk is no failed write.
    config = "[queue]\nchannel_size_bytes = 262144\n"
    with node_on_small_disk(bin_dir, tmp, "queue-full", "queuenode", KIND_QUEUE, config,
                            False) as (disk, node):
        if node is None:
            return
        c = Conn(node, kind=KIND_QUEUE)
        check_eq(c.call(80, str8("q0") + b"first"), (0, b""), "§8.1", "a Push making a ring")
        fill_up(disk.path)
        got = c.call(80, str8("q1") + b"new")
        status_is(got, "InternalError", "§8.1", "a Push whose ring cannot be created (disk full)")
        check(b"q1.ring" in got[1], "§8.1", f"the message names the file: {msg(got)!r}")
        check_eq(c.call(80, str8("q0") + b"second"), (0, b""), "§8.1",
                 "a Push to an existing ring with the disk full")
        check_eq(c.call(81, str8("q0")), (0, b"first"), "§8.1", "a Pop with the disk full")
        os.remove(os.path.join(disk.path, "filler"))
        until_ok(lambda: c.call(80, str8("q1") + b"new"))
        check_eq(c.call(81, str8("q1")), (0, b"new"), "§8.1", "new rings once there is room")
        c.close()


def test_disk_full(bin_dir, tmp):
    for durability in ("interval", "always"):
        dht_disk_full(bin_dir, tmp, durability)
    for fsync in ("always", "interval"):
        logfiles_disk_full(bin_dir, tmp, fsync)
    queue_disk_full(bin_dir, tmp)


# ---------------------------------------------------------------------------------------------
# §6.6: a second Redistribute while one runs


def test_redistribute_busy(bin_dir, tmp):
    """§6.6: Busy, before any item and changing nothing, while a Redistribute runs; the running
    one ends with ShuttingDown when the node stops first."""
    half = 1 << 63
    dead = socket.socket()  # a target nobody listens on: the move retries until the node stops
    dead.bind(("127.0.0.1", 0))
    target = "%s:%d" % dead.getsockname()
    node = Node(bin_dir, "dhtnode", KIND_DHT, tmp, "dht-busy")
    try:
        c = Conn(node, kind=KIND_DHT)
        c.call(26, str8("mv") + make_batch([(k, b"r%d" % k) for k in range(1, 101)]))
        body = u64(0) + u64(half - 1) + u16(1) + str8(target) + u64(half) + u64(FULL_MAX)
        rid = c.send(29, body)
        c.credit(rid, 1000)
        items, rep = c.items_until(rid, 1)
        check(rep is None and len(items) == 1, "§6.6", f"a running Redistribute's Progress {rep}")
        d = Conn(node, kind=KIND_DHT)
        other = u64(0) + u64(FULL_MAX >> 2) + u16(1) + str8(target) + u64((FULL_MAX >> 2) + 1) \
            + u64(FULL_MAX)
        items2, st, m = d.stream(29, other)
        check(not items2, "§6.6", "a refused Redistribute sends no item")
        status_is((st, m), "Busy", "§6.6", "a second Redistribute while one runs")
        check(re.search(rb"\d+ of \d+", m) is not None, "§6.6",
              f"the Busy message says how far the running one is: {m!r}")
        r = ok_body(d.call(32), "§6.9", "GetRedistribution while one runs")
        check_eq((r.u64(), r.u64(), r.u8()), (0, half - 1, 1), "§6.6",
                 "the refused Redistribute changed nothing (range of the running one, running)")
        d.close()
        node.proc.send_signal(signal.SIGTERM)
        try:
            while True:
                ftype, st, _, fid, fb = c.recv_frame()
                if fid == rid and ftype == T_REPLY:
                    status_is((st, fb), "ShuttingDown", "§6.6",
                              "a Redistribute still running at shutdown ends with")
                    break
        except (Closed, socket.timeout, ConnectionResetError) as e:
            check(False, "§6.6", f"no ShuttingDown Reply for the running Redistribute ({e})")
        c.close()
    finally:
        node.stop()
        dead.close()


# ---------------------------------------------------------------------------------------------
# §2, §2.2, §2.3: a client that never reads its replies


def polled_stats(c):
    """GetStats while waiting for something: checked once by the caller, not on every poll (so
    the number of checks does not depend on the machine's speed)."""
    r = Reader(c.call(3)[1])
    return dict((r.str8(), r.u64()) for _ in range(r.u32()))


def uncompressed_records(items):
    """Record count of uncompressed batch Items (§4.1), from their headers alone."""
    return sum(struct.unpack("<I", body[4:8])[0] for _, body in items)


def test_back_pressure(bin_dir, tmp):
    """§2.2: a client that never reads costs the node output_buffer_bytes; the node stops reading
    its requests; the streams it holds count against max_stream_memory_bytes, so new streams
    elsewhere get TooManyRequests naming the setting while other requests are served; once the
    client reads, everything arrives."""
    cfg = "[server]\noutput_buffer_bytes = 65536\nmax_stream_memory_bytes = 1048576\n"
    node = Node(bin_dir, "logfilesnode", KIND_LOGFILES, tmp, "logfiles-backpressure", config=cfg)
    try:
        w = Conn(node, kind=KIND_LOGFILES)
        records = 2048  # 8 MiB that does not compress, more than the socket buffers hold
        for j in range(0, records, 256):
            w.call(49, str8("bp") + make_batch([(k, os.urandom(4096)) for k in range(j, j + 256)]))
        # The stalled client: a small receive buffer, a read with a regular expression (3 MiB of
        # stream memory, past the node's budget of 1 MiB) and all the credit it needs.
        a = Conn(node, kind=KIND_LOGFILES, rcvbuf=65536)
        rid = a.send(50, range_body("bp", 0, FULL_MAX, mode=2, filt=b"(?s).", flags=1))
        a.credit(rid, 1 << 20)
        deadline = time.time() + 5
        while time.time() < deadline:
            stats = polled_stats(w)
            if stats.get("stream_memory_bytes", 0) >= 1 << 20:
                break
            time.sleep(0.05)
        check(stats.get("stream_memory_bytes", 0) >= 1 << 20, "§2.2",
              f"a regular-expression read holds about 3 MiB ({stats.get('stream_memory_bytes')})")
        # Its output stalls (what the node writes stops growing, but for GetStats replies).
        deadline = time.time() + 10
        last = polled_stats(w)["bytes_out"]
        while time.time() < deadline:
            time.sleep(0.2)
            now = polled_stats(w)["bytes_out"]
            if now - last < 65536:
                break
            last = now
        check(time.time() < deadline, "§2.2", "the output of a client that never reads stalls")
        # A request sent meanwhile: answered once the client reads (§2.2 lets the node leave it
        # unread while the unsent output is over output_buffer_bytes, not promise that it is).
        a.send_frame(T_REQUEST, 1, 9999)
        # And a stream of its own: its read still holds the node's budget when this is read.
        a.send_frame(T_REQUEST, 51, 9998, str8("other") + u8(0) + u32(0))
        # Other connections are served; new streams anywhere wait for the memory budget.
        got = w.call(51, str8("bp") + u8(0) + u32(0))
        status_is(got, "TooManyRequests", "§2.2", "a stream while the node's streams hold "
                  "max_stream_memory_bytes")
        check(b"max_stream_memory_bytes" in got[1], "§2.2", f"the message names it: {msg(got)!r}")
        check_eq(w.call(48, str8("other") + u64(1) + b"x"), (0, b""), "§2.2",
                 "a Put on another connection while one never reads")
        r = ok_body(w.call(1), "§2.2", "GetVersion on another connection")
        check_eq(r.u16(), 1, "§5", "GetVersion protocol version")
        # The stalled client reads: every item, the read's Reply, then the waiting request's.
        items, rep = a.items_until(rid, records + 1, timeout=20)
        check_eq((rep, uncompressed_records(items)), ((0, b""), records), "§2.2",
                 "once it reads, the stalled client gets its whole read and its Reply")
        check_eq(a.reply_for(9999)[0], 0, "§2.2", "and the request that waited is answered")
        got = a.reply_for(9998)
        status_is(got, "TooManyRequests", "§2.2", "the stalled client's new stream, while its "
                  "read holds more than max_stream_memory_bytes")
        check(b"max_stream_memory_bytes" in got[1], "§2.2", f"the message names it: {msg(got)!r}")
        a.close()
        deadline = time.time() + 5
        while polled_stats(w).get("stream_memory_bytes", 1) and time.time() < deadline:
            time.sleep(0.05)
        items, st, _ = w.stream(51, str8("other") + u8(0) + u32(0))
        check_eq(st, 0, "§2.2", "streams are served again once the memory is free")
        w.close()
    finally:
        node.stop()


# ---------------------------------------------------------------------------------------------
# §1: mutual TLS (client certificates)


def make_pki(d):
    """A throwaway CA, a node certificate for 127.0.0.1 and a client certificate it signs, and a
    client certificate of another CA; None (after a failed check) without openssl."""
    os.makedirs(d)
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]

    def run(*args):
        made = subprocess.run(["openssl", *args], capture_output=True, cwd=d)
        if made.returncode != 0:
            raise RuntimeError(f"openssl {args[0]}: {made.stderr[-300:]!r}")

    for ca in ("ca", "other-ca"):
        run("req", "-x509", *ec, "-keyout", f"{ca}-key.pem", "-out", f"{ca}.pem", "-days", "1",
            "-subj", f"/CN=conformance {ca}", "-addext", "basicConstraints=critical,CA:TRUE",
            "-addext", "keyUsage=critical,keyCertSign,cRLSign")
    node_ext = "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth"
    for name, ca, ext in (("node", "ca", node_ext),
                          ("client", "ca", "extendedKeyUsage=clientAuth"),
                          ("stranger", "other-ca", "extendedKeyUsage=clientAuth")):
        run("req", *ec, "-keyout", f"{name}-key.pem", "-out", f"{name}.csr", "-subj",
            f"/CN=conformance {name}")
        with open(os.path.join(d, f"{name}.ext"), "w") as f:
            f.write(ext + "\nbasicConstraints=CA:FALSE\n")
        run("x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.pem", "-CAkey", f"{ca}-key.pem",
            "-CAcreateserial", "-days", "1", "-extfile", f"{name}.ext", "-out", f"{name}.pem")
    os.chmod(os.path.join(d, "node-key.pem"), 0o600)
    return lambda name: os.path.join(d, name)


def tls_refused(node, ctx):
    """Whether the node refuses the TLS session: the handshake fails, or (TLS 1.3, where the
    client finishes first) the node's alert ends it before any swarm hello."""
    try:
        c = Conn(node, tls=ctx)
    except (ssl.SSLError, Closed, ConnectionResetError, BrokenPipeError):
        return True
    c.close()
    return False


def test_mutual_tls(bin_dir, tmp):
    """§1 and security.md "Mutual TLS": with [tls] client_ca_file, a client presents a certificate
    of that CA or is refused in the TLS handshake, on every node kind."""
    try:
        pki = make_pki(os.path.join(tmp, "mtls"))
    except (RuntimeError, FileNotFoundError) as e:
        check(False, "tls", f"openssl makes a CA and certificates (needs openssl): {e}")
        return
    contexts = {}
    for who in ("client", "stranger", None):
        ctx = ssl.create_default_context(cafile=pki("ca.pem"))
        if who:
            ctx.load_cert_chain(pki(f"{who}.pem"), pki(f"{who}-key.pem"))
        contexts[who] = ctx
    cfg = (f'[tls]\ncert_file = "{pki("node.pem")}"\nkey_file = "{pki("node-key.pem")}"\n'
           f'client_ca_file = "{pki("ca.pem")}"\n')
    for binary, kind in (("dhtnode", KIND_DHT), ("logfilesnode", KIND_LOGFILES),
                         ("queuenode", KIND_QUEUE)):
        node = Node(bin_dir, binary, kind, tmp, f"{binary}-mtls", config=cfg)
        try:
            check(tls_refused(node, contexts[None]), "§1",
                  f"{binary}: a client without a certificate is refused")
            check(tls_refused(node, contexts["stranger"]), "§1",
                  f"{binary}: a client certificate of another CA is refused")
            c = Conn(node, kind=kind, tls=contexts["client"])
            check_eq(c.result, (OK_MAGIC, 0, 1, 0), "§1", f"{binary}: a client certificate of "
                     "the CA: the swarm handshake inside TLS")
            r = ok_body(c.call(1), "§1", f"{binary}: GetVersion under mutual TLS")
            check_eq((r.u16(), r.u8()), (1, kind), "§5", f"{binary}: GetVersion under mutual TLS")
            c.close()
        finally:
            node.stop()



def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bin-dir", default="target/release", help="directory of the node binaries")
    ap.add_argument("--only", action="append",
                    choices=["dht", "logfiles", "queue", "auth", "tls", "redistribute",
                             "backpressure", "disk"])
    ap.add_argument("--no-mount", action="store_true",
                    help="fill disks with a file-size limit instead of a tmpfs (as without root)")
    ap.add_argument("--limit-s", type=int, default=120, help="give up after this many seconds")
    ap.add_argument("-v", "--verbose", action="store_true", help="print every passed check")
    args = ap.parse_args()
    VERBOSE[0] = args.verbose
    NO_MOUNT[0] = args.no_mount
    bin_dir = os.path.abspath(args.bin_dir)
    for b in ("dhtnode", "logfilesnode", "queuenode"):
        if not os.access(os.path.join(bin_dir, b), os.X_OK):
            print(f"protocol_client.py: no {b} in {bin_dir}", file=sys.stderr)
            return 2
    tmp = tempfile.mkdtemp(prefix="swarm-conformance.")
    start = time.time()

    def overrun(signum, frame):
        raise TimeoutError(f"the run passed its limit of {args.limit_s} s")

    # A hang fails the run (every node is still stopped by the finally blocks).
    signal.signal(signal.SIGALRM, overrun)
    signal.alarm(args.limit_s)

    def terminated(signum, frame):
        raise KeyboardInterrupt("SIGTERM")

    # SIGTERM (the suite's own limit) stops every node as well.
    signal.signal(signal.SIGTERM, terminated)
    parts = [("dht", lambda: (test_dht(bin_dir, tmp),
                              test_stats(bin_dir, tmp, "dhtnode", KIND_DHT))),
             ("logfiles", lambda: (test_logfiles(bin_dir, tmp), test_logfiles_limits(bin_dir, tmp),
                                   test_stats(bin_dir, tmp, "logfilesnode", KIND_LOGFILES))),
             ("queue", lambda: (test_queue(bin_dir, tmp), test_queue_limits(bin_dir, tmp),
                                test_queue_default_value_limit(bin_dir, tmp),
                                test_stats(bin_dir, tmp, "queuenode", KIND_QUEUE))),
             ("auth", lambda: test_auth(bin_dir, tmp)),
             ("tls", lambda: (test_tls(bin_dir, tmp), test_mutual_tls(bin_dir, tmp))),
             ("redistribute", lambda: test_redistribute_busy(bin_dir, tmp)),
             ("backpressure", lambda: test_back_pressure(bin_dir, tmp)),
             ("disk", lambda: test_disk_full(bin_dir, tmp))]
    try:
        for name, fn in parts:
            if args.only and name not in args.only:
                continue
            t = time.time()
            try:
                fn()
            except Exception as e:  # a failure the checks did not foresee: report, go on
                check(False, name, f"aborted: {type(e).__name__}: {e}")
            print(f"{name}: done in {time.time() - t:.1f} s")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"{PASSED[0]} checks passed, {len(FAILURES)} failed, {time.time() - start:.1f} s")
    return 1 if FAILURES else 0


if __name__ == "__main__":
    sys.exit(main())
