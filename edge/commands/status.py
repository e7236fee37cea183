"""`emotion-edge status`: what the service is doing, for a person over ssh (or --json for scripts).

Combines systemd's view (`systemctl show`) with the service's own status.json (mood, frames/s,
model, last error). Exit 0 when the service runs and its status is fresh, 3 otherwise (like
`systemctl status`).
"""
from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable

from edge.errors import EdgeError
from edge.service.statusfile import _is_number, candidate_paths, read_status
from edge.text import printable

UNIT = "emotion-edge"
SHOW_PROPS = ("ActiveState", "SubState", "MainPID", "NRestarts", "Result", "StatusText",
              "ExecMainStartTimestamp", "UnitFileState", "LoadState")
STALE_AFTER = 30.0  # seconds without a status update while "running": frames have stopped
EXIT_OK, EXIT_NOT_RUNNING = 0, 3


def add_parser(sub) -> None:
    p = sub.add_parser("status", help="service state, current mood, frames/s, model in use, last error")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--db", metavar="PATH", help="the service's SQLite log, as for `log --db`: its status.json is beside it")
    p.add_argument("--status-file", metavar="PATH", help="the service's status.json (default: found beside the log)")
    p.add_argument("--unit", default=UNIT, help=f"systemd unit name (default {UNIT})")


def parse_show(text: str) -> dict[str, str]:
    """`systemctl show -p A,B` output (KEY=VALUE lines) as a dict."""
    out: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep:
            out[key] = value
    return out


def service_state(unit: str = UNIT, run: Callable[..., Any] = subprocess.run) -> dict[str, str] | None:
    """systemd's view of the unit, or None where there is no systemctl / no running systemd."""
    if shutil.which("systemctl") is None:
        return None
    try:
        p = run(["systemctl", "show", "--property=" + ",".join(SHOW_PROPS), "--", unit],  # a unit is never an option
                capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    if p.returncode != 0:
        return None
    state = parse_show(p.stdout)
    return state or None


def find_status(args: argparse.Namespace) -> tuple[Path | None, dict[str, Any] | None, str | None]:
    """(path, data, problem): the first status.json that exists; a bad config is reported, not fatal."""
    if getattr(args, "status_file", None):
        p = Path(args.status_file)
        return p, read_status(p), None
    if getattr(args, "db", None):  # like `log --db`: the log named, its status file beside it
        from edge.service.statusfile import STATUS_NAME

        p = Path(args.db).parent / STATUS_NAME
        return p, read_status(p), None
    cfg, problem = None, None
    try:
        from edge.config import load_config

        cfg = load_config(getattr(args, "config", None))
    except EdgeError as e:
        problem = f"config: {e}"
    except PermissionError:
        pass
    for p in candidate_paths(cfg):
        data = read_status(p)
        if data is not None:
            return p, data, problem
    return None, None, problem


def _age(t: float | None, now: float) -> str:
    if not t:
        return "?"
    s = max(0.0, now - float(t))
    if s < 90:
        return f"{s:.0f} s ago"
    if s < 5400:
        return f"{s / 60:.0f} min ago"
    if s < 172800:
        return f"{s / 3600:.1f} h ago"
    return f"{s / 86400:.0f} days ago"


def _face_time(v: Any) -> str:
    """Face time from status.json (written by another process: anything may be there)."""
    from edge.calibration.learned import face_time

    return face_time(v) if isinstance(v, (int, float)) and not isinstance(v, bool) and v >= 0 else "?"


def _count_of(frames: int, source: Any) -> str:
    """'1 photo', '12 photos', '1 camera frame', '42 camera frames' (never "photos photos")."""
    if source == "photos":
        return f"{frames} photo{'' if frames == 1 else 's'}"
    return f"{frames} {source if isinstance(source, str) else 'camera'} frame{'' if frames == 1 else 's'}"


def _notice_lines(notes: Any, now: float) -> list[str]:
    """The service's notes (edge/service/notices.py): a damaged log moved aside, the bundled model used instead
    of a damaged deployed one, rows dropped. status.json is another process's file: anything may be there."""
    if not isinstance(notes, dict):
        return []
    out = []
    for note in notes.values():
        if isinstance(note, dict) and isinstance(note.get("message"), str):
            t = note.get("time")
            when = _age(t, now) if _is_number(t) else "?"
            out.append(f"notice:  {note['message']} ({when})")
    return out


def _framing_line(fr: Any) -> str | None:
    """`view`'s framing advice for the last minute's typical face (edge/loop.py FramingWindow writes it
    into status.json: medians of the largest face's size and light, no pictures); None without one."""
    if not isinstance(fr, dict) or not isinstance(fr.get("advice"), str):
        return None
    advice = fr["advice"]
    if advice.startswith("framing "):  # "framing good: ..." under the "framing:" heading
        advice = advice[len("framing "):]
    n, secs = fr.get("face_samples"), fr.get("seconds")
    if isinstance(n, int) and not isinstance(n, bool) and n > 0 and _is_number(secs):
        advice += f" (typical face, last {'minute' if secs >= 59 else f'{secs:.0f} s'})"
    return f"framing: {advice}"


def _calibration_text(cal: Any, now: float) -> str:
    """'from 2026-11-25 12:40 (3 h ago), 42 camera frames' / 'none (run `emotion-edge calibrate`)'."""
    if not isinstance(cal, dict):
        return "none (run `emotion-edge calibrate` to learn your resting face)"
    parts = []
    created = cal.get("created")
    learned = cal.get("learned") if isinstance(cal.get("learned"), dict) else None
    if cal.get("source") == "learned" and learned is not None:
        parts.append(f"learned while watching, from {_face_time(learned.get('face_seconds'))} of faces (in use)")
    elif isinstance(created, (int, float)) and not isinstance(created, bool):
        stamp = time.strftime("%Y-%m-%d %H:%M", time.localtime(created))
        frames = cal.get("frames")
        parts.append(f"in use, from {stamp} ({_age(created, now)})"
                     + (f", {_count_of(frames, cal.get('source'))}" if isinstance(frames, int) else ""))
    else:
        parts.append("none")
    taught = cal.get("taught")
    if isinstance(taught, list) and taught:
        parts.append("expressions taught: " + ", ".join(printable(str(x)) for x in taught[:64])
                     + (f" ({printable(str(cal['profile']))[:200]})" if cal.get("profile") else ""))
    if learned is not None and cal.get("source") != "learned":
        so_far = f"learned resting face: {_face_time(learned.get('face_seconds'))} of faces"
        if parts[0] != "none":
            parts.append(f"{so_far} (not used while a calibration is)")
        elif not learned.get("ready"):
            parts.append(f"{so_far} so far (used from {_face_time(learned.get('min_seconds'))})")
    if cal.get("running"):
        parts.append("a calibration is running now")
    if cal.get("last_failure"):
        parts.append(f"last attempt: {cal['last_failure']}")
    return "; ".join(parts)


def summarize(service: dict[str, str] | None, path: Path | None, data: dict[str, Any] | None,
              problem: str | None = None, now: float | None = None) -> tuple[dict[str, Any], list[str], int]:
    """The --json object, the human lines and the exit status."""
    now = time.time() if now is None else now
    lines: list[str] = []
    running = False
    if service is not None and service.get("LoadState") not in (None, "not-found"):
        active, sub = service.get("ActiveState", "?"), service.get("SubState", "?")
        running = active in ("active", "reloading")
        head = f"service: {active} ({sub})"
        if running and service.get("MainPID", "0") != "0":
            head += f", pid {service['MainPID']}"
        if service.get("ExecMainStartTimestamp"):
            head += f", since {service['ExecMainStartTimestamp']}"
        if service.get("NRestarts", "0") not in ("", "0"):
            head += f", {service['NRestarts']} restarts"
        if service.get("Result") not in (None, "", "success"):
            head += f", last result {service['Result']}"
        if service.get("UnitFileState"):
            head += f", {service['UnitFileState']} at boot"
        lines.append(head)
        if service.get("StatusText"):
            lines.append(f"systemd: {service['StatusText']}")
    elif service is not None:
        lines.append(f"service: {UNIT}.service is not installed (sudo ./install.sh)")
    else:
        lines.append("service: systemd not available here")

    stale = False
    if data is None:
        lines.append("status: no status file yet (the service has not started)" if path is None else
                     f"status: {path} is missing")
    else:
        state = data.get("state", "?")
        if service is None:
            running = state in ("running", "reloading", "starting")
        updated = data.get("updated")
        stale = running and bool(updated) and now - float(updated) > STALE_AFTER
        if "mood" in data:
            mood = data["mood"]
            text = "no face" if mood == "none" else f"{mood} ({float(data.get('confidence', 0)):.2f})"
            if data.get("valence") is not None and mood != "none":
                text += f", valence {float(data['valence']):+.2f} arousal {float(data.get('arousal', 0)):+.2f}"
            if "face_ratio" in data:
                text += f", faces in {float(data['face_ratio']) * 100:.0f}% of frames"
            lines.append(f"mood:    {text}")
        if "fps" in data:
            lines.append(f"speed:   {float(data['fps']):.1f} frames/s, {data.get('frames', 0)} frames")
        framing = _framing_line(data.get("framing"))
        if framing:
            lines.append(framing)
        model = data.get("model") or {}
        if model:
            lines.append(f"model:   {model.get('path', '?')} (sha256 {str(model.get('sha256', ''))[:12]})")
        if model:
            lines.append("calibration: " + _calibration_text(data.get("calibration"), now))
        if data.get("source"):
            lines.append(f"source:  {data['source']}, LED {data.get('led', '?')}")
        err = data.get("last_error")
        if isinstance(err, dict):
            lines.append(f"error:   {err.get('message', '?')} ({_age(err.get('time'), now)})")
        elif err:
            lines.append(f"error:   {err}")
        else:
            lines.append("error:   none")
        lines.extend(_notice_lines(data.get("notices"), now))
        note = f"status:  {state}, updated {_age(updated, now)} ({path})"
        if stale:
            note += f" - STALE: no frames for over {STALE_AFTER:.0f} s (camera hung? the watchdog will restart it)"
        if data.get("stop_reason") and not running:
            note += f", stopped: {data['stop_reason']}"
        lines.append(note)
    if problem:
        lines.append(problem)
    code = EXIT_OK if running and not stale else EXIT_NOT_RUNNING
    obj = {"service": service, "status_file": str(path) if path else None, "status": data,
           "running": running, "stale": stale, "problem": problem}
    return obj, lines, code


def main(args: argparse.Namespace) -> int:
    service = service_state(getattr(args, "unit", UNIT))
    path, data, problem = find_status(args)
    obj, lines, code = summarize(service, path, data, problem)
    if getattr(args, "json", False):
        json.dump(obj, sys.stdout, indent=1, sort_keys=True)
        sys.stdout.write("\n")
    else:
        print("\n".join(printable(line) for line in lines))  # fields may hold escapes or newlines
    return code
