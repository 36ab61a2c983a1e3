#!/usr/bin/env python3
"""An independent XML-RPC server built on Python's standard xmlrpc.server, used by
tests/uyuni_interop.rs to prove our client against another implementation.

Usage: xmlrpc_server.py [--tls CERT KEY]
Prints "PORT <n>" on stdout once listening on 127.0.0.1 (random free port).

Besides a few UYUNI-shaped methods it serves misbehaving endpoints by URL path:
/html502 (HTTP 502 HTML page), /html200 (HTML page with status 200), /truncated,
/malformed, /stall (never answers in time), /wrongtype (a string where an int belongs).
"""
import base64
import hashlib
import secrets
import ssl
import sys
import threading
import time
import xmlrpc.client
from http.server import ThreadingHTTPServer
from xmlrpc.server import SimpleXMLRPCDispatcher, SimpleXMLRPCRequestHandler

LOCK = threading.Lock()
SESSIONS = set()
STATE = {"next_session": 1, "logins": 0, "next_action": 100, "actions": {},
         "inflight": 0, "peak": 0, "peers": set()}
USER, PASSWORD = "admin", "s3cret<&>"


def fault(code, msg):
    return xmlrpc.client.Fault(code, "redstone.xmlrpc.XmlRpcFault: " + msg)


def check(key):
    with LOCK:
        if key not in SESSIONS:
            sid = key.split("x")[0] if isinstance(key, str) else "?"
            raise xmlrpc.client.Fault(
                -1,
                "com.redhat.rhn.common.hibernate.LookupException: "
                "Could not find session with id: " + sid,
            )


def auth_login(user, password):
    if user != USER or password != PASSWORD:
        raise fault(2950, "Either the password or username is incorrect.")
    with LOCK:
        n = STATE["next_session"]
        STATE["next_session"] += 1
        STATE["logins"] += 1
        key = "%dx%s" % (n, hashlib.sha256(secrets.token_bytes(16)).hexdigest())
        SESSIONS.add(key)
    return key


def auth_logout(key):
    check(key)
    with LOCK:
        SESSIONS.discard(key)
    return 1


def api_get_version():
    return "27"


def test_expire_sessions():
    with LOCK:
        SESSIONS.clear()
    return 1


def test_logins():
    with LOCK:
        return STATE["logins"]


def test_echo(key, value):
    check(key)
    return value


def test_all_types(key):
    check(key)
    return {
        "int": 1000010000,
        "negative": -7,
        "true": True,
        "false": False,
        "double": 2.5,
        "string": "a < b & c > d",
        "spaces": "  leading and trailing\n\tspaces  ",
        "empty": "",
        "unicode": "Grüße ☺",
        "date": xmlrpc.client.DateTime("20260312T17:07:41"),
        "blob": xmlrpc.client.Binary(b"\x00\x01binary\xff"),
        "array": [1, "two", [3.0]],
        "nested": {"inner": {"deep": [True]}},
        "empty_array": [],
        "empty_struct": {},
    }


def test_sleep(key, ms):
    check(key)
    with LOCK:
        STATE["inflight"] += 1
        STATE["peak"] = max(STATE["peak"], STATE["inflight"])
    time.sleep(ms / 1000.0)
    with LOCK:
        STATE["inflight"] -= 1
    return ms


def test_peak():
    with LOCK:
        return STATE["peak"]


def test_connections():
    """Distinct client TCP connections seen so far (keep-alive reuses one)."""
    with LOCK:
        return len(STATE["peers"])


def test_fault(key):
    check(key)
    raise fault(-208, "No such system - sid = 42")


def system_get_details(key, sid):
    check(key)
    if sid != 1000010000:
        raise fault(-208, "No such system - sid = %d" % sid)
    return {
        "id": sid,
        "profile_name": "web-1",
        "hostname": "web-1.example",
        "minion_id": "web-1",
        "base_entitlement": "salt_entitled",
        "addon_entitlements": [],
        "release": "24.04",
        "last_boot": xmlrpc.client.DateTime("20260301T08:00:00"),
        "lock_status": False,
        "contact_method": "default",
        "description": "",
    }


ERRATUM = {
    "id": 7,
    "advisory_name": "USN-7412-2",
    "advisory_type": "Security Advisory",
    "advisory_synopsis": "nginx vulnerabilities",
    "advisory_status": "final",
    "date": "2026-03-01",
    "issue_date": "2026-02-28",
    "update_date": "2026-03-01",
    "reboot": False,
}


def system_get_relevant_errata(key, sids):
    check(key)
    # Overloads told apart by value type, like UYUNI: int -> list, array -> per system.
    if isinstance(sids, list):
        return [{"system_id": str(s), "errata": [ERRATUM]} for s in sids]
    return [ERRATUM]


def system_schedule_script_run(key, sids, user, group, timeout, script, earliest):
    check(key)
    if not isinstance(earliest, xmlrpc.client.DateTime):
        raise fault(-1, "earliest must be a date")
    if not script.startswith("#!"):
        raise fault(1213, "script must start with a shebang")
    with LOCK:
        aid = STATE["next_action"]
        STATE["next_action"] += 1
        # Each action reports "in progress" for two polls, then finishes.
        STATE["actions"][aid] = {"sids": list(sids), "polls": 0, "script": script}
    return aid


def _action(aid):
    a = STATE["actions"].get(aid)
    if a is None:
        raise xmlrpc.client.Fault(
            -1, "unhandled internal exception: Could not find action with id: %d" % aid
        )
    return a


def _row(sid, msg):
    return {
        "server_id": sid,
        "server_name": "sys-%d" % sid,
        "base_channel": "ubuntu-2404-amd64-main",
        "timestamp": xmlrpc.client.DateTime("20260312T17:07:41"),
        "message": msg,
    }


def schedule_list_in_progress_systems(key, aid):
    check(key)
    with LOCK:
        a = _action(aid)
        a["polls"] += 1
        if a.get("cancelled") or 97 in a["sids"]:
            return []
        if 98 in a["sids"]:
            return [_row(s, "Queued") for s in a["sids"]]
        if a["polls"] <= 2 or 99 in a["sids"]:
            return [_row(s, "Picked Up") for s in a["sids"]]
        return []


def _finished(aid, failed):
    with LOCK:
        a = _action(aid)
        if a["polls"] <= 2 or a.get("cancelled") or {97, 98, 99} & set(a["sids"]):
            return []
        rows = []
        for s in a["sids"]:
            is_failed = s % 2 == 1
            if is_failed == failed:
                rows.append(_row(s, "Failed to execute script. [jid=1]" if failed
                                 else "Script executed successfully. [jid=1]"))
        return rows


def schedule_list_completed_systems(key, aid):
    check(key)
    return _finished(aid, False)


def schedule_list_failed_systems(key, aid):
    check(key)
    return _finished(aid, True)


def system_get_script_results(key, aid):
    check(key)
    with LOCK:
        a = _action(aid)
        if a["polls"] <= 2 or a.get("cancelled") or 98 in a["sids"] or 99 in a["sids"]:
            return []
        out = []
        for s in a["sids"]:
            if s % 2 == 1:
                out.append({"serverId": s, "returnCode": 3,
                            "output": "stderr:\n\nno such file\n",
                            "output_enc64": False,
                            "startDate": xmlrpc.client.DateTime("20260312T17:07:41"),
                            "stopDate": xmlrpc.client.DateTime("20260312T17:07:42")})
            else:
                text = "stderr:\n\nwarn <x> & y\nstdout:\n\n%d\n" % s
                out.append({"serverId": s, "returnCode": 0,
                            "output": base64.b64encode(text.encode()).decode(),
                            "output_enc64": True})
        return out


def schedule_cancel_actions(key, ids):
    check(key)
    with LOCK:
        actions = [_action(i) for i in ids]
        # Like UYUNI: refuse when a system already picked the action up (sid 99 here).
        if any(99 in a["sids"] for a in actions):
            raise fault(10003, "Cannot cancel actions in PICKED UP state, aborting...")
        for a in actions:
            a["cancelled"] = True
    return 1


class Handler(SimpleXMLRPCRequestHandler):
    rpc_paths = ("/rpc/api",)
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def _raw(self, status, body, ctype="text/xml"):
        data = body.encode()
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_POST(self):
        path = self.path
        with LOCK:
            STATE["peers"].add(self.client_address)
        if path == "/rpc/api":
            return super().do_POST()
        length = int(self.headers.get("Content-Length", "0"))
        self.rfile.read(length)
        if path == "/html502":
            return self._raw(502, "<html><head><title>502 Bad Gateway</title></head>"
                                  "<body><h1>Bad Gateway</h1></body></html>", "text/html")
        if path == "/html200":
            return self._raw(200, "<!DOCTYPE html><html><body>Login required</body></html>",
                             "text/html")
        if path == "/truncated":
            return self._raw(200, "<?xml version='1.0'?><methodResponse><params><param>"
                                  "<value><struct><member><name>id</name><value><i4>1")
        if path == "/malformed":
            return self._raw(200, "<?xml version='1.0'?><methodResponse><params><param>"
                                  "<value><i4>1</string></value></param></params>"
                                  "</methodResponse>")
        if path == "/wrongtype":
            return self._raw(200, "<?xml version='1.0'?><methodResponse><params><param>"
                                  "<value><string>not-a-number</string></value></param>"
                                  "</params></methodResponse>")
        if path == "/stall":
            time.sleep(30)
            return self._raw(200, "")
        self._raw(404, "not found", "text/plain")


class Server(ThreadingHTTPServer, SimpleXMLRPCDispatcher):
    daemon_threads = True
    logRequests = False

    def __init__(self, addr):
        ThreadingHTTPServer.__init__(self, addr, Handler)
        SimpleXMLRPCDispatcher.__init__(self, allow_none=False, encoding="utf-8")


def main():
    srv = Server(("127.0.0.1", 0))
    for name, fn in {
        "auth.login": auth_login,
        "auth.logout": auth_logout,
        "api.getVersion": api_get_version,
        "test.expireSessions": test_expire_sessions,
        "test.logins": test_logins,
        "test.echo": test_echo,
        "test.allTypes": test_all_types,
        "test.fault": test_fault,
        "test.sleep": test_sleep,
        "test.peak": test_peak,
        "test.connections": test_connections,
        "system.getDetails": system_get_details,
        "system.getRelevantErrata": system_get_relevant_errata,
        "system.scheduleScriptRun": system_schedule_script_run,
        "system.getScriptResults": system_get_script_results,
        "schedule.listInProgressSystems": schedule_list_in_progress_systems,
        "schedule.listCompletedSystems": schedule_list_completed_systems,
        "schedule.listFailedSystems": schedule_list_failed_systems,
        "schedule.cancelActions": schedule_cancel_actions,
    }.items():
        srv.register_function(fn, name)
    if len(sys.argv) == 4 and sys.argv[1] == "--tls":
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(sys.argv[2], sys.argv[3])
        srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
    print("PORT %d" % srv.server_address[1], flush=True)
    srv.serve_forever()


if __name__ == "__main__":
    main()
