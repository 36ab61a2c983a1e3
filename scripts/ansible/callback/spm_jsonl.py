# spm_jsonl: an Ansible stdout callback that prints one JSON object per line per event.
#
# Shipped with spm (scripts/ansible/callback/) and selected by spm's Ansible runner with
# ANSIBLE_STDOUT_CALLBACK=spm_jsonl. Every line written to stdout is a JSON object with an
# "event" field; spm parses them to stream progress and build per-host results.
#
# Events:
#   playbook_start {playbook}
#   play_start     {play}
#   task_start     {play, task, handler}
#   host_result    {host, task, status: ok|changed|failed|unreachable|skipped,
#                   ignore_errors, msg, rc?, report?}
#   no_hosts       {play, reason: matched|remaining}
#   stats          {hosts: {name: {ok, changed, failures, unreachable, skipped,
#                   rescued, ignored}}}
#   warning        {msg}   (only when an event could not be serialised)
from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = """
    name: spm_jsonl
    type: stdout
    short_description: one JSON object per line per event, for spm
    description:
      - Prints playbook, play, task, per-host result and final statistics events as JSON
        lines on stdout. Used by spm's Ansible runner.
"""

import json
import sys

from ansible.plugins.callback import CallbackBase

# Longest message kept per result; the rest is cut with a marker.
MAX_MSG = 4000


def _text(value):
    """Best-effort conversion of a result field to a short string."""
    if value is None:
        return None
    if isinstance(value, (list, tuple)):
        value = "\n".join(str(v) for v in value)
    text = str(value)
    if len(text) > MAX_MSG:
        text = text[:MAX_MSG] + "... [truncated]"
    return text


def _message(result):
    """The most useful human-readable message of a task result dictionary.

    For loops, the message of the first failed item beats the generic
    "One or more items failed".
    """
    results = result.get("results")
    if isinstance(results, list):
        for item in results:
            if isinstance(item, dict) and (item.get("failed") or item.get("unreachable")):
                msg = _message(item)
                if msg:
                    return msg
    for key in ("msg", "reason", "stderr", "exception", "stdout"):
        value = result.get(key)
        if value:
            return _text(value)
    return None


class CallbackModule(CallbackBase):
    """Emit JSON lines for spm."""

    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "stdout"
    CALLBACK_NAME = "spm_jsonl"

    def __init__(self, *args, **kwargs):
        super(CallbackModule, self).__init__(*args, **kwargs)
        self._play = None

    def _emit(self, event, **fields):
        fields["event"] = event
        try:
            line = json.dumps(fields, default=str, sort_keys=True)
        except (TypeError, ValueError) as exc:
            line = json.dumps({"event": "warning", "msg": "unserialisable event: %s" % exc})
        sys.stdout.write(line + "\n")
        sys.stdout.flush()

    # Playbook, play and task boundaries.

    def v2_playbook_on_start(self, playbook):
        self._emit("playbook_start", playbook=getattr(playbook, "_file_name", None))

    def v2_playbook_on_play_start(self, play):
        self._play = play.get_name().strip()
        self._emit("play_start", play=self._play)

    def v2_playbook_on_task_start(self, task, is_conditional):
        self._emit("task_start", play=self._play, task=task.get_name().strip(), handler=False)

    def v2_playbook_on_handler_task_start(self, task):
        self._emit("task_start", play=self._play, task=task.get_name().strip(), handler=True)

    def v2_playbook_on_no_hosts_matched(self):
        self._emit("no_hosts", play=self._play, reason="matched")

    def v2_playbook_on_no_hosts_remaining(self):
        self._emit("no_hosts", play=self._play, reason="remaining")

    # Per-host results.

    def _host_result(self, result, status, ignore_errors=False):
        res = result._result if isinstance(result._result, dict) else {}
        fields = {
            "host": result._host.get_name(),
            "task": result._task.get_name().strip(),
            "status": status,
            "ignore_errors": bool(ignore_errors),
        }
        if status in ("failed", "unreachable"):
            fields["msg"] = _message(res)
        elif status == "skipped":
            fields["msg"] = _text(res.get("skip_reason") or res.get("skipped_reason"))
        else:
            fields["msg"] = _text(res.get("msg"))
        if isinstance(res.get("rc"), int):
            fields["rc"] = res.get("rc")
        if "spm_report" in res:
            fields["report"] = res["spm_report"]
        self._emit("host_result", **fields)

    def v2_runner_on_ok(self, result):
        res = result._result if isinstance(result._result, dict) else {}
        self._host_result(result, "changed" if res.get("changed") else "ok")

    def v2_runner_on_failed(self, result, ignore_errors=False):
        self._host_result(result, "failed", ignore_errors)

    def v2_runner_on_unreachable(self, result):
        self._host_result(result, "unreachable")

    def v2_runner_on_skipped(self, result):
        self._host_result(result, "skipped")

    # Final statistics.

    def v2_playbook_on_stats(self, stats):
        hosts = {}
        for name in sorted(stats.processed.keys()):
            summary = stats.summarize(name)
            hosts[name] = {
                "ok": summary.get("ok", 0),
                "changed": summary.get("changed", 0),
                "failures": summary.get("failures", 0),
                "unreachable": summary.get("unreachable", 0),
                "skipped": summary.get("skipped", 0),
                "rescued": summary.get("rescued", 0),
                "ignored": summary.get("ignored", 0),
            }
        self._emit("stats", hosts=hosts)
