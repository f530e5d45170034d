"""A simulated Windows host's updates behind the WinRM test endpoint, for install tests.

The endpoint (mspauto.lab.winrm_endpoint) answers scripts with canned output; patching
a Windows host needs answers that change: once updates are installed the next probe
must no longer list them, and a reboot must clear the pending-reboot signals and move
the boot time. :class:`WindowsUpdateHost` keeps that state and answers, as the
endpoint's ``responder``:

- mspauto's Windows Update probe (mspauto.patching.windows): the probe's JSON document
  built from the pending updates, each in the probe's own shape (take them from
  tests/fixtures/winrm/windows-update.yaml, whose values name their sources), and the
  answers of a policy's health checks (mspauto.patching.health): this host's free
  disk, its running services, every command exiting 0;
- ``ansible.windows.win_updates`` as Ansible runs it over WinRM: the module's
  ``start``, ``poll`` and ``cancel`` operations (read from the payload Ansible sends
  on stdin), with progress records in the shape ansible.windows' unit-test data keeps
  from a Windows Server 2019 (``tests/unit/test_data/win_updates`` in
  https://github.com/ansible-collections/ansible.windows, a1e2a842): ``search_result``,
  ``download_result``, ``install_result`` and ``exit``; a failed install carries the
  HRESULT and exception text of ``failed_install.txt``, a reboot pending at the start
  the exit of ``install_reboot_req.txt``;
- ``ansible.windows.win_reboot``: the boot-time query, the ``shutdown.exe /r`` wrapper
  and the LogonUI test command that collection's ``plugin_utils/_reboot.py`` sends,
  each answered in the shape that code reads.

Modelled, not recorded: everything happens at once (no download or install progress
records, no delay); an update installs unless it is told to fail; filtering follows
win_updates.ps1 (``accept_list`` and ``reject_list`` as case-insensitive regular
expressions over the title and ``KB`` numbers, ``category_names`` by exact name or
``*``). What this does NOT prove: the Windows Update Agent, the scheduled task
win_updates starts, a real reboot. Only a Windows host proves those.
"""

from __future__ import annotations

import json
import re
import threading
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from mspauto.lab.winrm_endpoint import MODELLED, CannedAnswer
from mspauto.patching.health import SECTION
from mspauto.patching.windows import PROBE_MARKER

__all__ = ["INSTALL_FAILURE", "WindowsUpdateHost", "ansible_module_call"]

DATA = (
    "https://github.com/ansible-collections/ansible.windows/tree/"
    "a1e2a842ab8fd9db7108e0fda80dbb36ee04c07e/tests/unit/test_data/win_updates"
)
INSTALL_FAILURE = -2147023293
"""The HRESULT of the failed install in failed_install.txt (0x80070643, ERROR_INSTALL_FAILURE)."""
_FAILED_ALL = "Failed to install all updates - see updates for more information"
_REBOOT_FIRST = "A reboot is required before more updates can be installed"
_REBOOT_BEHAVIOUR = {0: "NeverReboots", 1: "AlwaysRequiresReboot", 2: "CanRequestReboot"}
_REBOOT_SIGNALS = ("SystemInfo", "ComponentServicing", "WindowsUpdate", "PendingFileRename")
_BOOT_TIME_QUERY = "Win32_OperatingSystem -Property LastBootUpTime"
_FILETIME_MINUTE = 60 * 10_000_000


def ansible_module_call(script: str) -> tuple[str, dict[str, Any]] | None:
    """(module name, arguments) of the module Ansible (2.19 and later) runs with this
    script: its PowerShell bootstrap reads a JSON document naming the exec wrapper, four
    NUL characters, then the wrapper's manifest whose module action carries the
    arguments as ``complex_args``. None for any other script."""
    head, separator, manifest = script.partition("\0\0\0\0")
    if not separator or '"exec_wrapper"' not in head[:200]:
        return None
    try:
        for action in json.loads(manifest).get("actions", []):
            for variable in action.get("params", {}).get("Variables", []):
                if variable.get("Name") == "complex_args":
                    args = dict(variable["Value"])
                    return str(args.get("_ansible_module_name", "")), args
    except (ValueError, TypeError, AttributeError, KeyError):
        return None
    return None


@dataclass
class WindowsUpdateHost:
    """One Windows host's pending updates and reboot state; pass :meth:`respond` to a
    :class:`~mspauto.lab.winrm_endpoint.WinRMEndpoint` as its ``responder``."""

    updates: list[dict[str, Any]]
    """Pending updates in the probe's shape (an ``Updates`` entry of the fixture)."""
    reboot_pending: bool = False
    failing: Mapping[str, int] = field(default_factory=dict)
    """UpdateID -> the HRESULT its install fails with (it stays pending)."""
    free_disk_mb: int = 40_960
    """Free space on the system drive (C:)."""
    running: frozenset[str] = frozenset({"W32Time", "WinRM"})
    """The services whose Status is Running."""
    boot_time: int = 133_000_000_000_000_000
    """``LastBootUpTime.ToFileTime()``: 100 ns ticks since 1601."""
    installs: list[list[str]] = field(default_factory=list)
    """The UpdateIDs each win_updates run installed, in order."""
    reboots: int = 0
    _runs: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def respond(self, script: str) -> CannedAnswer | None:
        """This host's answer to ``script``, or None for the endpoint's canned answers."""
        with self._lock:
            if script.startswith(PROBE_MARKER):
                return self._probe(script)
            call = ansible_module_call(script)
            if call is not None and call[0] == "ansible.windows.win_updates":
                return self._win_updates(call[1])
            if _BOOT_TIME_QUERY in script:
                return _answer(f"{self.boot_time}\r\n", "the boot time win_reboot reads")
            if "shutdown.exe /r" in script:
                self._reboot()
                return _answer(
                    json.dumps({"stdout": "", "stderr": "", "rc": 0}) + "\r\n",
                    "the JSON win_reboot's shutdown.exe wrapper prints on success",
                )
            expected = re.search(r"'(success-[0-9a-f-]{36})'", script)
            if "AutoLogonChecked" in script and expected:
                return _answer(expected[1] + "\r\n", "win_reboot's LogonUI test command")
        return None

    # --- the probe ----------------------------------------------------------------

    def _probe(self, script: str) -> CannedAnswer:
        signals = dict.fromkeys(_REBOOT_SIGNALS, False)
        signals["SystemInfo"] = signals["WindowsUpdate"] = self.reboot_pending
        document = {
            "Probe": 1,
            "Server": None,
            "ResultCode": 2,
            "Warnings": [],
            "Updates": self.updates,
            "Reboot": signals,
            "Error": None,
        }
        lines = [json.dumps(document, ensure_ascii=True, separators=(",", ":"))]
        if SECTION in script:
            lines.append(SECTION)
            if "Get-PSDrive" in script:
                lines.append(f"disk C: {self.free_disk_mb}")
            for index, name in enumerate(re.findall(r"\$_\.Name -eq '((?:[^']|'')*)'", script)):
                state = "active" if name.replace("''", "'") in self.running else "inactive"
                lines.append(f"service {index} {state}")
            for index in range(script.count("-EncodedCommand ")):
                lines.append(f"command {index} 0")
        return _answer(
            "".join(f"{line}\r\n" for line in lines),
            "the probe's document over this host's pending updates (values from "
            "tests/fixtures/winrm/windows-update.yaml) and its health checks' answers",
        )

    # --- win_updates --------------------------------------------------------------

    def _win_updates(self, args: Mapping[str, Any]) -> CannedAnswer:
        operation = args.get("_operation", "start")
        options = args.get("_operation_options") or {}
        if operation == "poll":
            output = self._runs.get(str(options.get("pipe_name")), [])
            return _module({"changed": False, "output": output})
        if operation == "cancel":
            self._runs.pop(str(options.get("cancel_id")), None)
            return _module({"changed": False})
        name = f"ansible-win-updates-{uuid.uuid4()}"
        self._runs[name] = self._install(args)
        return _module(
            {
                "changed": False,
                "poll_options": {"pipe_name": name},
                "cancel_options": {"cancel_id": name, "task_pid": 4242},
            }
        )

    def _install(self, args: Mapping[str, Any]) -> list[dict[str, Any]]:
        """The progress records of one win_updates run, its changes made at once."""
        found = [_update_info(raw) for raw in self.updates]
        filtered = []
        selected = []
        for info, raw in zip(found, self.updates, strict=True):
            reasons = _filter_reasons(info, args)
            if reasons:
                filtered.append({"id": info["id"], "reasons": reasons})
            else:
                selected.append(raw)
        records: list[dict[str, Any]] = [
            {"task": "search_result", "result": {"updates": found, "filtered": filtered}}
        ]
        exit_result: dict[str, Any] = {
            "action": None,
            "exception": None,
            "reboot_required": self.reboot_pending,
            "failed": False,
            "changed": bool(selected) and args.get("state", "installed") != "searched",
        }
        if not exit_result["changed"] or args.get("_ansible_check_mode"):
            return [*records, {"task": "exit", "result": exit_result}]
        if self.reboot_pending:
            exit_result.update(changed=False, failed=True, exception=_exception(_REBOOT_FIRST))
            return [*records, {"task": "exit", "result": exit_result}]
        downloaded = [{"result_code": 2, "id": raw["UpdateID"], "hresult": 0} for raw in selected]
        installed = []
        done = []
        for raw in selected:
            hresult = self.failing.get(raw["UpdateID"])
            reboot = hresult is None and raw.get("RebootBehavior", 0) != 0
            installed.append(
                {
                    "result_code": 2 if hresult is None else 4,
                    "reboot_required": reboot,
                    "id": raw["UpdateID"],
                    "hresult": hresult or 0,
                }
            )
            if hresult is None:
                done.append(raw["UpdateID"])
                self.reboot_pending = self.reboot_pending or reboot
        self.installs.append(done)
        self.updates = [u for u in self.updates if u["UpdateID"] not in done]
        exit_result["reboot_required"] = self.reboot_pending
        if len(done) < len(selected):
            exit_result.update(failed=True, exception=_exception(_FAILED_ALL))
        return [
            *records,
            {"task": "download_result", "result": {"info": downloaded}},
            {"task": "install_result", "result": {"info": installed}},
            {"task": "exit", "result": exit_result},
        ]

    def _reboot(self) -> None:
        self.reboots += 1
        self.reboot_pending = False
        self.boot_time += _FILETIME_MINUTE


def _update_info(raw: Mapping[str, Any]) -> dict[str, Any]:
    """An update as win_updates' search_result lists it (Format-UpdateInfo's fields;
    those the probe does not carry take the values most updates in the recorded data
    have)."""
    return {
        "id": raw["UpdateID"],
        "title": raw["Title"],
        "description": "",
        "kb": [f"KB{kb}" for kb in raw.get("KBArticleIDs") or []],
        "type": "Software" if raw.get("Type", 1) == 1 else "Driver",
        "deployment_action": "Installation",
        "auto_select_on_websites": True,
        "browse_only": False,
        "revision_number": raw.get("RevisionNumber", 0),
        "categories": list(raw.get("Categories") or []),
        "is_installed": False,
        "is_hidden": False,
        "is_present": False,
        "reboot_required": bool(raw.get("RebootRequired")),
        "impact": "Normal",
        "reboot_behaviour": _REBOOT_BEHAVIOUR.get(raw.get("RebootBehavior", 0), "NeverReboots"),
        "is_beta": False,
        "is_downloaded": bool(raw.get("IsDownloaded")),
        "is_mandatory": False,
        "is_uninstallable": False,
        "auto_selection": "LetWindowsUpdateDecide",
        "auto_download": "LetWindowsUpdateDecide",
    }


def _filter_reasons(info: Mapping[str, Any], args: Mapping[str, Any]) -> list[str]:
    """Why win_updates.ps1 would leave this update out (its filter, in its order)."""
    texts = [info["title"], *info["kb"]]
    accept: Sequence[str] = args.get("accept_list") or []
    reject: Sequence[str] = args.get("reject_list") or []
    categories: Sequence[str] = args.get("category_names") or []
    reasons = []
    if accept and not any(re.search(p, t, re.I) for p in accept for t in texts):
        reasons.append("accept_list")
    if reject and any(re.search(p, t, re.I) for p in reject for t in texts):
        reasons.append("reject_list")
    if categories and not any(
        c == "*" or c.lower() in (n.lower() for n in info["categories"]) for c in categories
    ):
        reasons.append("category_names")
    return reasons


def _exception(message: str) -> dict[str, str]:
    """win_updates' exception record for a ``throw`` (the recorded text's first part)."""
    return {"message": message, "exception": f"{message}\r\nAt line:916 char:9"}


def _module(result: Mapping[str, Any]) -> CannedAnswer:
    return _answer(
        json.dumps(result) + "\r\n",
        f"win_updates' result, in the shape its action plugin reads (records as in {DATA})",
    )


def _answer(stdout: str, what: str) -> CannedAnswer:
    return CannedAnswer(pattern="", source=MODELLED, note=f"simulated host: {what}", stdout=stdout)
