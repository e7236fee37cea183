"""The systemd service and how it reports: `python -m edge.service` (the unit's ExecStart) and
`emotion-edge run --service` run service.py.

service.py     Service: signals, reload, the watchdog, the status file around the pipeline's loop
notify.py      sd_notify to systemd (READY=1, WATCHDOG=1, STATUS=, ...)
statusfile.py  status.json, written by the service, read by `emotion-edge status` and the MQTT bridge
notices.py     notes for the owner that are not errors (a log moved aside, rows dropped), shown by status
logsetup.py    logging to stderr, with journald priorities under systemd (the CLI's too)

Nothing is imported here, so `emotion-edge status` reading status.json does not load the service.
"""
