#!/usr/bin/env python3
"""Drive the spm UYUNI simulator with Python's standard xmlrpc.client.

Usage: sim_client.py URL BASE_URL [CAFILE]. Prints one JSON object with what it saw.
Only the standard library is used, so this is an independent implementation of the
XML-RPC wire protocol.
"""
import datetime
import json
import ssl
import sys
import urllib.request
import xmlrpc.client

url, base = sys.argv[1], sys.argv[2]
cafile = sys.argv[3] if len(sys.argv) > 3 else None
ctx = ssl.create_default_context(cafile=cafile) if cafile else None
out = {}


def advance(seconds):
    req = urllib.request.Request(f"{base}/_sim/clock/advance?seconds={seconds}", method="POST")
    urllib.request.urlopen(req, context=ctx).read()


def fault(fn):
    try:
        fn()
    except xmlrpc.client.Fault as f:
        return [f.faultCode, f.faultString]
    return None


if cafile:
    # Without the generated CA the certificate must be rejected.
    try:
        xmlrpc.client.ServerProxy(url, context=ssl.create_default_context()).api.getVersion()
        out["untrusted_rejected"] = False
    except ssl.SSLError:
        out["untrusted_rejected"] = True

c = xmlrpc.client.ServerProxy(url, context=ctx)
out["version"] = c.api.getVersion()
key = c.auth.login("admin", "admin")
out["key"] = key
systems = c.system.listSystems(key)
out["systems"] = [[s["id"], s["name"]] for s in systems]
out["last_checkin_is_datetime"] = isinstance(systems[0]["last_checkin"], xmlrpc.client.DateTime)
groups = c.systemgroup.listAllGroups(key)
out["groups"] = {g["name"]: g["system_count"] for g in groups}
members = c.systemgroup.listSystems(key, "test-ubuntu")
out["test_ubuntu"] = [[m["id"], m["profile_name"]] for m in members]
s1, s2 = members[0]["id"], members[1]["id"]
r1 = c.system.getRelevantErrata(key, s1)
out["relevant_int"] = sorted(e["id"] for e in r1)
many = c.system.getRelevantErrata(key, [s1, s2])
out["relevant_array"] = {m["system_id"]: sorted(e["id"] for e in m["errata"]) for m in many}
common = sorted(set(out["relevant_array"][str(s1)]) & set(out["relevant_array"][str(s2)]))
eid = common[0]
now = datetime.datetime.now()
aids = c.system.scheduleApplyErrata(key, [s1, s2], [eid], now)
out["apply_action_ids"] = aids
out["apply_again_fault"] = fault(lambda: c.system.scheduleApplyErrata(key, s1, [eid], now))
out["in_progress_before"] = sorted(x["server_id"] for x in c.schedule.listInProgressSystems(key, aids[0]))
out["completed_before"] = c.schedule.listCompletedSystems(key, aids[0])
sid_script = c.system.scheduleScriptRun(key, s1, "root", "root", 60,
                                        "#!/bin/bash\necho 'a;b' ; cat /proc/sys/kernel/random/boot_id", now)
out["script_results_before"] = c.system.getScriptResults(key, sid_script)
projects = c.contentmanagement.listProjects(key)
out["projects"] = [p["label"] for p in projects]
label = projects[0]["label"]
out["build"] = c.contentmanagement.buildProject(key, label, "monthly build")
envs = c.contentmanagement.listProjectEnvironments(key, label)
out["env_building"] = [[e["label"], e["version"], e["status"]] for e in envs]
out["promote_missing_env"] = fault(lambda: c.contentmanagement.promoteProject(key, label, "nosuch"))
out["build_missing_project"] = fault(lambda: c.contentmanagement.buildProject(key, "nosuch"))
advance(600)
envs = c.contentmanagement.listProjectEnvironments(key, label)
out["env_built"] = [[e["label"], e["version"], e["status"]] for e in envs]
done = c.schedule.listCompletedSystems(key, aids[0])
out["completed_after"] = sorted(x["server_id"] for x in done)
out["completed_message"] = done[0].get("message")
out["failed_after"] = c.schedule.listFailedSystems(key, aids[0])
actions = c.schedule.listAllActions(key)
mine = [a for a in actions if a["id"] == aids[0]][0]
out["action_summary"] = [mine["type"], mine["completedSystems"], mine["inProgressSystems"]]
out["relevant_after"] = sorted(e["id"] for e in c.system.getRelevantErrata(key, s1))
res = c.system.getScriptResults(key, sid_script)
out["script_result"] = [res[0]["serverId"], res[0]["returnCode"], res[0]["output"], res[0]["output_enc64"]]
events = c.system.listSystemEvents(key, s1, "Patch Update")
out["events"] = [[e["id"], e["action_type"], "status" in e] for e in events]
out["fault_no_system"] = fault(lambda: c.system.getDetails(key, 42))
out["fault_login"] = fault(lambda: c.auth.login("admin", "wrong"))
out["fault_unknown_ns"] = fault(lambda: c.nosuch.call(key))
out["fault_bad_overload"] = fault(lambda: c.system.getRelevantErrata(key, "x"))
out["logout"] = c.auth.logout(key)
out["after_logout"] = fault(lambda: c.system.listSystems(key))
print(json.dumps(out))
