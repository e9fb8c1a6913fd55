"""``dcerpc monitor``: DCE/RPC seen in captures, one record per call (docs/monitor.md).

capture.py  pcap / pcapng through dpkt -> TCP segments (the only file access)
tcp.py      TCP reassembly per connection, both directions, sans-IO
passive.py  one association observed: fragments, binds, auth, calls -> records, sans-IO
smb2.py     SMB2 named pipes: one TCP connection's SMB2 messages -> one passive association per pipe
ntlm.py     user and domain from an NTLM AUTHENTICATE message
records.py  the records and their ECS-shaped JSON form
run.py      the pipeline and the summary counts
"""

from .capture import CaptureError
from .records import AuthInfo, BindRecord, CallRecord, Record, ViolationRecord, to_event
from .run import Monitor, Summary, monitor_file
from .tcp import Endpoint, Reassembler, Segment

__all__ = [
    "AuthInfo",
    "BindRecord",
    "CallRecord",
    "CaptureError",
    "Endpoint",
    "Monitor",
    "Reassembler",
    "Record",
    "Segment",
    "Summary",
    "ViolationRecord",
    "monitor_file",
    "to_event",
]
