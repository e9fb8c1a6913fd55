"""``dcerpc monitor``: DCE/RPC seen in captures, one record per call (docs/monitor.md).

capture.py  pcap / pcapng through dpkt -> TCP segments and UDP datagrams (the only file access)
tcp.py      TCP reassembly per connection, both directions, sans-IO
passive.py  one association observed: fragments, binds, auth, calls -> records, sans-IO
smb2.py     SMB2 named pipes: one TCP connection's SMB2 messages -> one passive association per pipe
cl.py       connectionless DCE/RPC over UDP: datagrams -> calls -> records, sans-IO
ntlm.py     user and domain from an NTLM AUTHENTICATE message
records.py  the records and their ECS-shaped JSON form
run.py      the pipeline and the summary counts
"""

from .capture import CaptureError
from .cl import ClReader, UdpDatagram
from .records import AuthInfo, BindRecord, CallRecord, Record, ViolationRecord, json_line, to_event
from .run import Monitor, Summary, monitor_file
from .tcp import Endpoint, Reassembler, Segment

__all__ = [
    "AuthInfo",
    "BindRecord",
    "CallRecord",
    "CaptureError",
    "ClReader",
    "Endpoint",
    "Monitor",
    "Reassembler",
    "Record",
    "Segment",
    "Summary",
    "UdpDatagram",
    "ViolationRecord",
    "json_line",
    "monitor_file",
    "to_event",
]
