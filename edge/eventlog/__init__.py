"""The local event log: an SQLite file of mood changes and periodic summaries, written by the
service and read by `emotion-edge log`, the chart and the MQTT bridge.

schema.py    the file format: the events table's columns, once
store.py     the file: opening it, a damaged or foreign file, moving ours aside, retention
recorder.py  the writer: what becomes a row, buffered and committed in batches (EventLog)
reader.py    read-only queries: rows, the timeline, a per-mood summary
follower.py  the latest mood as it is written, plus status.json, for the MQTT bridge (LogFollower)
"""
from edge.eventlog.follower import LogFollower
from edge.eventlog.reader import LogRow, Summary, iso_utc, open_readonly, read_rows, read_timeline, summarize
from edge.eventlog.recorder import EventLog
from edge.eventlog.store import NotOurLog, identify

__all__ = ["EventLog", "LogFollower", "LogRow", "NotOurLog", "Summary", "identify", "iso_utc", "open_readonly",
           "read_rows", "read_timeline", "summarize"]
