#!/usr/bin/env python3
"""SMTP sink for the spm notification tests (Debian package python3-aiosmtpd).

Listens on 127.0.0.1:PORT and writes every received message to OUTDIR as NNNN.eml (the raw
message) plus NNNN.json (envelope: mail_from, rcpt_tos, authenticated login, whether the
session used TLS). Files are written under a temporary name and renamed, so a reader never
sees half a message. --implicit-tls serves TLS from the first byte instead of STARTTLS. The JSON also holds the decoded From, To, Subject,
Message-ID and the text/plain and text/html parts, parsed by Python's email package. Optional STARTTLS (--cert/--key) and AUTH (--auth user:password, only
offered after STARTTLS). Prints "READY" when listening; exits when stdin closes.
"""
import argparse
import email
import email.policy
import itertools
import json
import os
import ssl
import sys
import warnings

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult


class Sink:
    def __init__(self, outdir):
        self.outdir = outdir
        self.counter = itertools.count(1)

    async def handle_DATA(self, server, session, envelope):
        n = next(self.counter)
        base = os.path.join(self.outdir, f"{n:04d}")
        meta = {
            "mail_from": envelope.mail_from,
            "rcpt_tos": envelope.rcpt_tos,
            "authenticated": bool(session.authenticated),
            "login": getattr(session.auth_data, "login", b"").decode() or None,
            "tls": session.ssl is not None or server.transport.get_extra_info("sslcontext") is not None,
        }
        # The message as a mail client sees it: decoded headers and text parts.
        raw = envelope.original_content or envelope.content
        msg = email.message_from_bytes(raw, policy=email.policy.default)
        meta["from"] = str(msg["From"])
        meta["to"] = str(msg["To"])
        meta["subject"] = str(msg["Subject"])
        meta["message_id"] = str(msg["Message-ID"])
        for kind in ("plain", "html"):
            part = msg.get_body(preferencelist=(kind,))
            meta[kind] = part.get_content() if part is not None else None
        for ext, data in ((".json", json.dumps(meta).encode()), (".eml", raw)):
            with open(base + ext + ".tmp", "wb") as f:
                f.write(data)
            os.rename(base + ext + ".tmp", base + ext)
        return "250 OK"


def main():
    # aiosmtpd itself sets the deprecated Session.login_data on success; keep stderr quiet.
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--outdir", required=True)
    p.add_argument("--cert")
    p.add_argument("--key")
    p.add_argument("--auth", help="user:password")
    p.add_argument("--implicit-tls", action="store_true", help="TLS from the first byte")
    a = p.parse_args()

    kwargs = {}
    if a.cert:
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(a.cert, a.key)
        if a.implicit_tls:
            kwargs["ssl_context"] = ctx
        else:
            kwargs["tls_context"] = ctx
            kwargs["require_starttls"] = True
    if a.auth:
        user, password = a.auth.split(":", 1)

        def authenticator(server, session, envelope, mechanism, auth_data):
            ok = auth_data.login.decode() == user and auth_data.password.decode() == password
            # handled=False: let aiosmtpd answer 535 itself on failure.
            return AuthResult(success=ok, handled=False, auth_data=auth_data)

        kwargs["authenticator"] = authenticator
        kwargs["auth_required"] = True
        kwargs["auth_require_tls"] = True

    controller = Controller(Sink(a.outdir), hostname="127.0.0.1", port=a.port, **kwargs)
    controller.start()
    print("READY", flush=True)
    try:
        sys.stdin.read()
    finally:
        controller.stop()


if __name__ == "__main__":
    main()
