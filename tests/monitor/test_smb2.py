"""The SMB2 reader (monitor/smb2.py) on hand-built SMB2 streams (smb2_streams.py) carrying real
DCE/RPC sessions made in memory (streams.py): pipes named, calls the same as over TCP."""

from __future__ import annotations

import struct

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dcerpc.monitor import CallRecord, Monitor, ViolationRecord, to_event
from dcerpc.monitor.records import Record
from dcerpc.monitor.smb2 import MAX_MESSAGE, MAX_PENDING, MAX_PIPES, Smb2Connection, looks_like_smb
from dcerpc.monitor.tcp import Segment
from tests.monitor import smb2_streams as b
from tests.monitor.streams import CLIENT, DOMAIN, SERVER, USER, Exchange, segments, session


def run(ex: Exchange, sizes: tuple[int, ...] = (1460,), mon: Monitor | None = None) -> list[Record]:
    mon = mon or Monitor()
    out: list[Record] = []
    for s in segments(ex, sizes):
        out += mon.feed(s)
    return out + mon.finish()


def calls(recs: list[Record]) -> list[CallRecord]:
    return [r for r in recs if isinstance(r, CallRecord)]


def shape(cs: list[CallRecord]) -> list[tuple[int, int | None, str, str, int, int]]:
    return [(c.call_id, c.opnum, c.operation, c.outcome, c.request_octets, c.response_octets) for c in cs]


EX = session(calls=3, big=20000)  # bind, 3 AddOne, a fragmented EchoData, a fault
TCP_SHAPE = shape(calls(run(EX)))


def test_recognised_by_content() -> None:
    assert looks_like_smb(b.frame(b.negotiate_request()))
    assert looks_like_smb(b"\0\0\0\x20\xffSMB" + bytes(28))  # SMB1 too (counted)
    assert not looks_like_smb(EX[0][1])  # a DCE/RPC bind
    assert not looks_like_smb(b"GET / HTTP/1.1\r\n")


@pytest.mark.parametrize("first", [1, 3, 4, 6, 7])
def test_recognised_when_tcp_cuts_the_frame_header(first: int) -> None:
    assert shape(calls(run(b.over_pipe(EX, "rw"), (first, 1460)))) == TCP_SHAPE


def test_netbios_session_request_on_139_is_skipped() -> None:
    ex = b.over_pipe(EX, "rw")
    request = b"\x81\x00\x00\x44" + bytes(0x44)  # RFC 1002 4.3.2: called and calling names
    ex = [(True, request), (False, b"\x82\x00\x00\x00"), *ex]
    assert shape(calls(run(ex))) == TCP_SHAPE


def test_write_read_pipe_calls_are_the_tcp_calls_with_the_pipe_and_smb_user() -> None:
    mon = Monitor()
    cs = calls(run(b.over_pipe(EX, "rw"), mon=mon))
    assert shape(cs) == TCP_SHAPE
    assert all(c.named_pipe == "\\pipe\\srvsvc" for c in cs)
    assert all((c.auth.user, c.auth.domain) == (USER, DOMAIN) for c in cs)  # the SMB2 session's logon
    assert cs[3].request_fragments > 1 and cs[3].response_fragments > 1
    ev = to_event(cs[0])
    assert ev["dcerpc"]["transport"] == "ncacn_np" and ev["dcerpc"]["named_pipe"] == "\\pipe\\srvsvc"
    assert ev["user"] == {"name": USER, "domain": DOMAIN}
    assert ev["dcerpc"]["auth"]["type"] == "none"  # the bind itself was not authenticated
    assert (ev["source"]["port"], ev["destination"]["port"]) == (CLIENT.port, SERVER.port)
    assert mon.summary.dcerpc_connections == 1 and mon.smb2["smb2_pipes"] == 1
    assert not mon.smb2["smb2_malformed"] and not mon.smb2["smb2_unmatched"]


def test_ioctl_transceive_carries_the_same_calls() -> None:
    cs = calls(run(b.over_pipe(EX, "ioctl", name="lsarpc")))
    assert shape(cs) == TCP_SHAPE
    assert {c.named_pipe for c in cs} == {"\\pipe\\lsarpc"}


def test_tcp_records_keep_their_transport() -> None:
    ev = to_event(calls(run(EX))[0])
    assert ev["dcerpc"]["transport"] == "ncacn_ip_tcp" and "named_pipe" not in ev["dcerpc"]


def test_compound_create_and_related_ioctl_inherit_the_fileid() -> None:
    """CREATE + IOCTL(FileId 0xFF..) in one frame (MS-SMB2 3.2.4.1.4): the IOCTL's input goes to
    the pipe the CREATE opens once its answer names the FileId; the answers come compounded too."""
    p = b.Pipe()
    p.logon()
    bind, ack = EX[0][1], EX[1][1]
    c1, c2 = p.next(), p.next()
    p.c(b.create_request(c1, "svcctl"), b.ioctl_request(c2, b.ANY, bind, flags=b.RELATED))
    p.s(b.create_response(c1, p.fid), b.ioctl_response(c2, p.fid, ack))
    for from_client, data in EX[2:]:
        m = p.next()
        p.c(b.write_request(m, p.fid, data)) if from_client else p.c(b.read_request(m, p.fid))
        p.s(b.write_response(m, len(data))) if from_client else p.s(b.read_response(m, data))
    cs = calls(run(p.out))
    assert shape(cs) == TCP_SHAPE and {c.named_pipe for c in cs} == {"\\pipe\\svcctl"}
    assert all(c.interface_name == "rpcecho" for c in cs)  # the bind in the compound was read


def test_async_interim_response_then_the_final_one() -> None:
    """A READ answered first by STATUS_PENDING (async), later by the data: the call completes."""
    p = b.Pipe()
    p.logon()
    p.open()
    for i, (from_client, data) in enumerate(EX):
        m = p.next()
        if from_client:
            p.c(b.write_request(m, p.fid, data))
            p.s(b.write_response(m, len(data)))
        else:
            p.c(b.read_request(m, p.fid))
            if i % 2:
                p.s(b.error_response(b.READ, m, b.PENDING, b.ASYNC))
            p.s(b.read_response(m, data, flags=b.ASYNC if i % 2 else 0))
    assert shape(calls(run(p.out))) == TCP_SHAPE


def test_buffer_overflow_reads_deliver_a_message_in_parts() -> None:
    """A message-mode pipe read short of the message: STATUS_BUFFER_OVERFLOW with data, then the rest."""
    p = b.Pipe()
    p.logon()
    p.open()
    for from_client, data in EX:
        if from_client:
            m = p.next()
            p.c(b.ioctl_request(m, p.fid, data))
            p.s(b.error_response(b.IOCTL, m, 0))  # a transceive whose answer comes by READ (odd, legal)
            continue
        for at in range(0, len(data), 1000):
            m = p.next()
            part = data[at : at + 1000]
            p.c(b.read_request(m, p.fid, 1000))
            status = b.BUFFER_OVERFLOW if at + 1000 < len(data) else 0
            p.s(b.read_response(m, part, status=status))
    assert shape(calls(run(p.out))) == TCP_SHAPE


def test_encrypted_compressed_and_smb1_are_counted_never_read() -> None:
    """A transform header (SMB3 encryption) whose 'ciphertext' is DCE/RPC in the clear must not be
    read as DCE/RPC; nor a compressed message; nor SMB1."""
    p = b.Pipe()
    p.c(b"\xffSMB" + bytes(28))  # the SMB1 NEGOTIATE a multi-protocol client opens with
    p.logon()
    p.open()
    for from_client, data in EX:
        body = b"\xfdSMB" + bytes(48) + data if from_client else b"\xfcSMB" + bytes(12) + data
        (p.c if from_client else p.s)(body)
    mon = Monitor()
    recs = run(p.out, mon=mon)
    assert not calls(recs)
    assert mon.smb2["smb2_encrypted"] == sum(1 for f, _ in EX if f)
    assert mon.smb2["smb2_compressed"] == sum(1 for f, _ in EX if not f)
    assert mon.smb2["smb1"] == 1


def test_disk_share_files_are_not_pipes() -> None:
    p = b.Pipe()
    p.c(b.negotiate_request())
    p.s(b.negotiate_response())
    m = p.next()
    p.c(b.tree_connect_request(m, "\\\\server\\share"))
    p.s(b.tree_connect_response(m, share_type=1))
    p.open("notes.txt")
    for _, data in EX:
        m = p.next()
        p.c(b.write_request(m, p.fid, data))
        p.s(b.write_response(m, len(data)))
    mon = Monitor()
    assert not run(p.out, mon=mon) and mon.smb2["smb2_pipes"] == 0


def test_capture_begun_after_the_create_still_names_calls() -> None:
    """A mid-session start: no CREATE seen, the FileId is followed anyway, the pipe's name unknown."""
    ex = b.over_pipe(EX, "rw", logon=False)[2:]  # drop the CREATE and its answer
    cs = calls(run(ex))
    assert shape(cs) == TCP_SHAPE and {c.named_pipe for c in cs} == {""}
    ev = to_event(cs[0])
    assert ev["dcerpc"]["transport"] == "ncacn_np" and "named_pipe" not in ev["dcerpc"]


def test_close_ends_the_pipe_and_reports_unanswered_calls() -> None:
    p = b.Pipe()
    p.logon()
    p.open()
    m = p.next()
    p.c(b.write_request(m, p.fid, EX[0][1]))  # the bind
    m = p.next()
    p.c(b.read_request(m, p.fid))
    p.s(b.read_response(m, EX[1][1]))
    m = p.next()
    p.c(b.write_request(m, p.fid, EX[2][1]))  # a request never answered
    p.close()
    mon = Monitor()
    segs = segments(p.out)
    out: list[Record] = []
    for s in segs[:-2]:  # before the FINs: the CLOSE's answer already reported the call
        out += mon.feed(s)
    assert [c.outcome for c in calls(out)] == ["unknown"]


def test_two_pipes_on_one_connection_are_kept_apart() -> None:
    a, c = b.Pipe(), b.Pipe(fid=bytes(range(16)))
    a.logon()
    a.open("srvsvc")
    m = a.next()
    a.c(b.create_request(m, "samr"))
    a.s(b.create_response(m, c.fid))
    for from_client, data in EX:  # interleaved: the same session on both pipes
        for fid in (a.fid, c.fid):
            m = a.next()
            if from_client:
                a.c(b.write_request(m, fid, data))
                a.s(b.write_response(m, len(data)))
            else:
                a.c(b.read_request(m, fid))
                a.s(b.read_response(m, data))
    cs = calls(run(a.out))
    by_pipe = {p: shape([x for x in cs if x.named_pipe == p]) for p in ("\\pipe\\srvsvc", "\\pipe\\samr")}
    assert by_pipe == {"\\pipe\\srvsvc": TCP_SHAPE, "\\pipe\\samr": TCP_SHAPE}


def test_anonymous_session() -> None:
    p = b.Pipe()
    p.logon(anonymous=True)
    p.open()
    for from_client, data in EX[:4]:
        m = p.next()
        p.c(b.write_request(m, p.fid, data)) if from_client else p.c(b.read_request(m, p.fid))
        p.s(b.write_response(m, len(data))) if from_client else p.s(b.read_response(m, data))
    cs = calls(run(p.out))
    assert cs and all(c.auth.anonymous and not c.auth.user for c in cs)


# --- bounds -------------------------------------------------------------------------------------


def test_pipes_per_connection_are_bounded() -> None:
    p = b.Pipe()
    p.logon()
    for i in range(MAX_PIPES + 10):
        m = p.next()
        p.c(b.create_request(m, f"p{i}"))
        p.s(b.create_response(m, struct.pack("<QQ", i, i)))
    conn = Smb2Connection("C1", CLIENT, SERVER, CLIENT, True)
    for from_client, data in p.out:
        conn.data(CLIENT if from_client else SERVER, 1.0, data)
    assert len(conn.pipes) == MAX_PIPES and conn.stats["smb2_pipes"] == MAX_PIPES + 10


def test_pending_requests_are_bounded() -> None:
    p = b.Pipe()
    p.logon()
    p.open()
    for _ in range(MAX_PENDING + 50):
        p.c(b.read_request(p.next(), p.fid))  # never answered
    conn = Smb2Connection("C1", CLIENT, SERVER, CLIENT, True)
    for from_client, data in p.out:
        conn.data(CLIENT if from_client else SERVER, 1.0, data)
    assert len(conn.pending) == MAX_PENDING and conn.stats["smb2_unanswered"] == 50


def test_an_oversize_message_is_skipped_and_the_pipe_resynchronises() -> None:
    """A WRITE past MAX_MESSAGE: its head is read, its data skipped (a gap for the pipe), and the
    calls after it are named again."""
    p = b.Pipe()
    p.logon()
    p.open()
    huge = bytes(MAX_MESSAGE + 5000)
    m = p.next()
    p.c(b.write_request(m, p.fid, huge))
    p.s(b.write_response(m, len(huge)))
    for from_client, data in EX:
        m = p.next()
        p.c(b.write_request(m, p.fid, data)) if from_client else p.c(b.read_request(m, p.fid))
        p.s(b.write_response(m, len(data))) if from_client else p.s(b.read_response(m, data))
    mon = Monitor()
    cs = calls(run(p.out, mon=mon))
    assert mon.smb2["smb2_oversize"] == 1
    assert [c.operation for c in cs] == ["AddOne"] * 3 + ["EchoData", ""]
    assert all(c.gap for c in cs)
    assert not [r for r in run(p.out) if isinstance(r, ViolationRecord)]


def test_garbage_frames_are_counted_and_hunted_past() -> None:
    ex = b.over_pipe(EX, "rw")
    bad = b"\0\0\0\x40" + b"\xabSMB" + bytes(60)  # a frame whose protocol id is not SMB's
    ex.insert(6, (True, bad + b"junk" * 10))
    mon = Monitor()
    cs = calls(run(ex, mon=mon))
    assert mon.smb2["smb2_bad_frames"] >= 1
    assert shape(cs) == TCP_SHAPE


def test_malformed_smb2_is_counted() -> None:
    short_header = b"\xfeSMB" + bytes(20)
    bad_offset = bytearray(b.write_request(9, bytes(16), b"x" * 10))
    bad_offset[64 + 2 : 64 + 4] = struct.pack("<H", 60000)
    p = b.Pipe()
    p.logon()
    p.c(short_header)
    p.c(bytes(bad_offset))
    mon = Monitor()
    run(p.out, mon=mon)
    assert mon.smb2["smb2_malformed"] == 2


# --- properties ---------------------------------------------------------------------------------


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(st.integers(1, 3000), min_size=1, max_size=6),  # the first may cut the frame header
    st.sampled_from(["rw", "ioctl"]),
)
def test_any_tcp_segmentation_gives_the_same_calls(sizes: list[int], mode: str) -> None:
    assert shape(calls(run(b.over_pipe(EX, mode), tuple(sizes)))) == TCP_SHAPE


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_mutated_streams_never_raise(data: st.DataObject) -> None:
    ex = b.over_pipe(EX, data.draw(st.sampled_from(["rw", "ioctl"])))
    i = data.draw(st.integers(0, len(ex) - 1))
    from_client, octets = ex[i]
    buf = bytearray(octets)
    for _ in range(data.draw(st.integers(1, 8))):
        at = data.draw(st.integers(0, len(buf) - 1))
        buf[at] = data.draw(st.integers(0, 255))
    ex[i] = (from_client, bytes(buf))
    if data.draw(st.booleans()):
        ex = ex[data.draw(st.integers(0, len(ex) - 1)) :]
    mon = Monitor()
    for rec in run(ex, (data.draw(st.integers(1, 1500)),), mon=mon):
        to_event(rec)


@settings(max_examples=100, deadline=None)
@given(st.binary(min_size=0, max_size=600))
def test_random_octets_after_a_valid_start_never_raise(junk: bytes) -> None:
    conn = Smb2Connection("C1", CLIENT, SERVER, CLIENT, True)
    conn.data(CLIENT, 1.0, b.frame(b.negotiate_request()) + junk)
    conn.data(SERVER, 1.0, junk + b.frame(b.negotiate_response()))
    conn.gap(CLIENT, 2.0, 10)
    conn.data(CLIENT, 3.0, junk)
    conn.close(4.0)


def test_segments_helper_keeps_flags() -> None:
    assert all(isinstance(s, Segment) for s in segments(b.over_pipe(EX[:2])))


def test_the_monitors_total_bound_counts_smb2_framers() -> None:
    """A message announced but never finished is held by the SMB2 framer: the monitor counts it in
    its total for half-cut buffers and, past the bound, makes the connection forget it."""
    mon = Monitor()
    mon.max_framed = 20_000
    head = b.frame(b.write_request(1, bytes(16), bytes(60_000)))[:30_000]  # cut: never completed
    ex: Exchange = [(True, b.frame(b.negotiate_request())), (True, head)]
    out: list[Record] = []
    for s in segments(ex)[:-2]:  # no FIN: the connection stays open
        out += mon.feed(s)
    assert mon.dropped_buffers >= 1 and mon.framed <= mon.max_framed
    assert sum(a.buffered for a in mon.associations.values()) == mon.framed
