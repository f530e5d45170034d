"""Local HTTP receivers standing in for ConnectWise Manage, Autotask and HaloPSA.

Modelled on each vendor's documented REST request shapes and auth (ConnectWise
Developer Network: service/tickets, Basic auth company+public:private and a clientId
header; Autotask REST API: Tickets, Tickets/query, Tickets/{id}/Notes with
ApiIntegrationCode/UserName/Secret headers; HaloPSA API: OAuth2 client credentials at
/auth/token, POST /api/Tickets and /api/Actions taking JSON arrays). They are not
recordings of real servers: they prove that mspauto sends those shapes and honours the
answers, not that a vendor's server accepts every detail. Each refuses a request whose
auth or required fields are wrong (401 or 400), so a test against them can fail.
"""

from __future__ import annotations

import base64
import json
import re
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class Psa:
    """Tickets and notes as a PSA keeps them. ``hold_answer()`` makes the next creation
    keep its answer (the ticket made) until ``release()``: a PSA whose answer is lost
    to the client's timeout."""

    def __init__(self) -> None:
        self.tickets: dict[int, dict[str, Any]] = {}
        self.notes: dict[int, list[str]] = {}
        self._holding = False
        self._released = threading.Event()
        self.requests: list[tuple[str, str]] = []
        self.lock = threading.Lock()

    def make(self, summary: str, company: str, text: str) -> int:
        with self.lock:
            number = len(self.tickets) + 101
            self.tickets[number] = {
                "id": number,
                "summary": summary,
                "company": company,
                "text": text,
                "closed": False,
            }
            self.notes[number] = []
            return number

    def hold_answer(self) -> None:
        self._holding, self._released = True, threading.Event()

    def release(self) -> None:
        self._released.set()

    def pause_if_slow(self) -> None:
        if self._holding:
            self._holding = False
            self._released.wait(60)


class _Handler(BaseHTTPRequestHandler):
    psa: Psa
    system: str

    def log_message(self, *args: Any) -> None:
        pass

    def _body(self) -> bytes:
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def _answer(self, code: int, data: Any = None) -> None:
        raw = b"" if data is None else json.dumps(data).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)

    def do_GET(self) -> None:
        self._route("GET", b"")

    def do_POST(self) -> None:
        self._route("POST", self._body())

    def _route(self, method: str, body: bytes) -> None:
        url = urllib.parse.urlsplit(self.path)
        self.psa.requests.append((method, url.path))
        query = dict(urllib.parse.parse_qsl(url.query))
        try:
            getattr(self, f"_{self.system}")(method, url.path, query, body)
        except (KeyError, ValueError, TypeError) as exc:
            self._answer(400, {"message": f"bad request: {exc}"})


class ConnectWiseHandler(_Handler):
    system = "connectwise"
    BASE = "/v4_6_release/apis/3.0"
    LOGIN = "msp+PUBKEY:PRIVKEY"
    CLIENT_ID = "c0ffee00-0000-4000-8000-000000000001"

    def _connectwise(self, method: str, path: str, query: dict[str, str], body: bytes) -> None:
        expected = "Basic " + base64.b64encode(self.LOGIN.encode()).decode()
        if self.headers["Authorization"] != expected or self.headers["clientId"] != self.CLIENT_ID:
            self._answer(401, {"code": "Unauthorized"})
            return
        path = path.removeprefix(self.BASE)
        if method == "POST" and path == "/service/tickets":
            ticket = json.loads(body)
            summary = ticket["summary"]
            if not summary or len(summary) > 100 or not ticket["board"]["name"]:
                raise ValueError("summary of 1..100 characters and a board are required")
            number = self.psa.make(
                summary, ticket["company"]["identifier"], ticket["initialDescription"]
            )
            self.psa.pause_if_slow()
            self._answer(201, {"id": number, "summary": summary})
        elif method == "GET" and path == "/service/tickets":
            tag = re.search(r'summary contains "([^"]*)"', query["conditions"])
            company = re.search(r'company/identifier = "([^"]*)"', query["conditions"])
            assert tag and company
            found = [
                {"id": t["id"], "summary": t["summary"]}
                for t in self.psa.tickets.values()
                if tag.group(1) in t["summary"] and t["company"] == company.group(1)
            ]
            self._answer(200, found)
        elif method == "GET" and (m := re.fullmatch(r"/service/tickets/(\d+)", path)):
            ticket = self.psa.tickets[int(m.group(1))]
            self._answer(200, {"id": ticket["id"], "closedFlag": ticket["closed"]})
        elif method == "POST" and (m := re.fullmatch(r"/service/tickets/(\d+)/notes", path)):
            note = json.loads(body)
            self.psa.notes[int(m.group(1))].append(note["text"])
            self._answer(201, {"id": 1, "text": note["text"]})
        else:
            self._answer(404, {"code": "NotFound"})


class AutotaskHandler(_Handler):
    system = "autotask"
    BASE = "/atservicesrest/v1.0"

    def _autotask(self, method: str, path: str, query: dict[str, str], body: bytes) -> None:
        headers = (
            self.headers["ApiIntegrationCode"],
            self.headers["UserName"],
            self.headers["Secret"],
        )
        if headers != ("INTEGRATION", "api@msp.example", "SECRET"):
            self._answer(401, {"errors": ["Unauthorized"]})
            return
        path = path.removeprefix(self.BASE)
        if method == "POST" and path == "/Tickets":
            ticket = json.loads(body)
            for required in ("companyID", "title", "status", "priority"):
                if ticket.get(required) in (None, ""):
                    raise ValueError(f"{required} is required")
            if not isinstance(ticket["companyID"], int):
                raise TypeError("companyID is an integer")
            number = self.psa.make(ticket["title"], str(ticket["companyID"]), ticket["description"])
            self.psa.pause_if_slow()
            self._answer(200, {"itemId": number})
        elif method == "POST" and path == "/Tickets/query":
            filters = {f["field"]: f["value"] for f in json.loads(body)["filter"]}
            found = [
                {"id": t["id"], "title": t["summary"]}
                for t in self.psa.tickets.values()
                if filters["title"] in t["summary"] and t["company"] == str(filters["companyID"])
            ]
            self._answer(200, {"items": found, "pageDetails": {"count": len(found)}})
        elif method == "GET" and (m := re.fullmatch(r"/Tickets/(\d+)", path)):
            ticket = self.psa.tickets[int(m.group(1))]
            self._answer(
                200, {"item": {"id": ticket["id"], "status": 5 if ticket["closed"] else 1}}
            )
        elif method == "POST" and (m := re.fullmatch(r"/Tickets/(\d+)/Notes", path)):
            note = json.loads(body)
            if not note["description"] or note["noteType"] is None or note["publish"] is None:
                raise ValueError("description, noteType and publish are required")
            self.psa.notes[int(m.group(1))].append(note["description"])
            self._answer(200, {"itemId": 1})
        else:
            self._answer(404, {"errors": ["not found"]})


class HaloHandler(_Handler):
    system = "halopsa"
    TOKEN = "halo-token-1"

    def _halopsa(self, method: str, path: str, query: dict[str, str], body: bytes) -> None:
        if method == "POST" and path == "/auth/token":
            form = dict(urllib.parse.parse_qsl(body.decode()))
            good = (form.get("grant_type"), form.get("client_id"), form.get("client_secret"))
            if good != ("client_credentials", "mspauto-app", "HALO-SECRET"):
                self._answer(401, {"error": "invalid_client"})
                return
            self._answer(
                200, {"access_token": self.TOKEN, "token_type": "Bearer", "expires_in": 3600}
            )
            return
        if self.headers["Authorization"] != f"Bearer {self.TOKEN}":
            self._answer(401, {"error": "unauthorized"})
            return
        if method == "POST" and path == "/api/Tickets":
            batch = json.loads(body)
            if not isinstance(batch, list):
                raise TypeError("POST /api/Tickets takes a JSON array")
            [ticket] = batch
            number = self.psa.make(ticket["summary"], str(ticket["client_id"]), ticket["details"])
            self.psa.pause_if_slow()
            self._answer(201, {"id": number, "summary": ticket["summary"]})
        elif method == "GET" and path == "/api/Tickets":
            found = [
                {"id": t["id"], "summary": t["summary"]}
                for t in self.psa.tickets.values()
                if query["search"] in t["summary"] and t["company"] == query["client_id"]
            ]
            self._answer(200, {"record_count": len(found), "tickets": found})
        elif method == "GET" and (m := re.fullmatch(r"/api/Tickets/(\d+)", path)):
            ticket = self.psa.tickets[int(m.group(1))]
            self._answer(200, {"id": ticket["id"], "status_id": 9 if ticket["closed"] else 1})
        elif method == "POST" and path == "/api/Actions":
            batch = json.loads(body)
            if not isinstance(batch, list):
                raise TypeError("POST /api/Actions takes a JSON array")
            [action] = batch
            self.psa.notes[int(action["ticket_id"])].append(action["note"])
            self._answer(201, {"id": 1})
        else:
            self._answer(404, {"error": "not found"})


def serve(handler: type[_Handler]) -> tuple[ThreadingHTTPServer, Psa]:
    """A receiver on a free loopback port; stop it with ``server.shutdown()``."""
    psa = Psa()
    bound = type(handler.__name__, (handler,), {"psa": psa})
    server = ThreadingHTTPServer(("127.0.0.1", 0), bound)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, psa
