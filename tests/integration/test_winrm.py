"""The WinRM transport against the WS-Management test endpoint (no Windows here).

The endpoint speaks the real wire protocol over HTTPS on loopback; its answers come
from tests/fixtures/winrm/answers.yaml, each reproducing a published output (or marked
modelled), not recorded from a host. See mspauto.lab.winrm_endpoint for what this does
not prove (NTLM/Kerberos/CredSSP, real PowerShell).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from mspauto.config import Settings
from mspauto.inventory.resolve import Client
from mspauto.lab.winrm_endpoint import WinRMEndpoint, load_answers, make_certificates
from mspauto.project import load_project
from mspauto.transport.base import ErrorKind
from mspauto.transport.winrm import WinRMTransport

pytestmark = pytest.mark.integration

PASSWORD = "Winrm-S3cret-6b2e"
ANSWERS = load_answers(Path(__file__).parent.parent / "fixtures" / "winrm" / "answers.yaml")


@pytest.fixture
def endpoint(
    winrm_certificates: tuple[Path, Path, Path], winrm_address: str
) -> Iterator[WinRMEndpoint]:
    with WinRMEndpoint(
        winrm_address,
        ANSWERS,
        users={"svc-msp": PASSWORD},
        certificate=(winrm_certificates[1], winrm_certificates[2]),
    ) as running:
        yield running


def _project(root: Path, endpoint: WinRMEndpoint, ca: Path | None) -> Path:
    """A project with one Windows client: win01 is the endpoint, win02 answers nothing."""
    address, port = endpoint.address, endpoint.port
    (root / "inventory").mkdir(parents=True)
    (root / "policies").mkdir()
    (root / "policies" / "contract.yaml").write_text("kind: contract\nname: std\n")
    host_vars: dict[str, Any] = {}
    if ca is not None:
        shutil.copy(ca, root / "contoso-ca.pem")
        host_vars["winrm_ca_trust_path"] = "contoso-ca.pem"
    document = {
        "client": {
            "name": "contoso",
            "display_name": "Contoso",
            "timezone": "Europe/London",
            "contract": "std",
            "platform": "windows",
            "credential": "svc",
            "credentials": {
                "svc": {
                    "user": "svc-msp",
                    "password": {"env": "WIN_PASSWORD"},
                    "winrm_transport": "basic",
                }
            },
        },
        "hosts": {
            "win01": {"address": address, "port": port, "vars": host_vars},
            "win02": {
                "address": address.removesuffix(".1") + ".2",
                "port": port,
                "vars": host_vars,
            },
        },
    }
    (root / "inventory" / "contoso.yaml").write_text(yaml.safe_dump(document))
    return root


def _client(root: Path) -> Client:
    project = load_project(Settings.load(root))
    assert not project.errors, project.errors
    return project.inventory.clients["contoso"]


@pytest.fixture
def secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WIN_PASSWORD", PASSWORD)


def test_exec_runs_powershell_and_records_it(
    endpoint: WinRMEndpoint, winrm_certificates: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    root = _project(tmp_path / "p", endpoint, winrm_certificates[0])
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "mspauto",
            "--project",
            str(root),
            "exec",
            "--client",
            "contoso",
            "--format",
            "json",
            "--",
            "hostname",
        ],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "WIN_PASSWORD": PASSWORD, "MSPAUTO_STATE_DIR": str(tmp_path / "s")},
    )
    results = {r["host"]: r for r in json.loads(result.stdout)["results"]}
    assert results["win01"]["stdout"] == "WIN-LAB01\r\n" and results["win01"]["ok"]
    assert results["win02"]["error"] == "unreachable"  # nothing listens on .2
    evidence = b"".join(p.read_bytes() for p in (tmp_path / "s").rglob("*") if p.is_file())
    assert b"WIN-LAB01" in evidence or b"win01" in evidence
    assert PASSWORD.encode() not in evidence


def test_long_scripts_arrive_whole_on_stdin(
    endpoint: WinRMEndpoint,
    winrm_certificates: tuple[Path, Path, Path],
    tmp_path: Path,
    secret: None,
) -> None:
    host = _client(_project(tmp_path, endpoint, winrm_certificates[0])).hosts["win01"]
    script = "# long script\r\n" + "".join(f"$v{i} = '{'x' * 60}'\r\n" for i in range(400))
    assert len(script) > 25_000  # far past what a command line can carry
    result = WinRMTransport(_client(tmp_path), tmp_path).run(host, script, sudo=False, timeout=30)
    assert result.ok and result.stdout == "long script received\r\n"
    assert endpoint.scripts == [script]


def test_one_shell_serves_many_commands(
    endpoint: WinRMEndpoint,
    winrm_certificates: tuple[Path, Path, Path],
    tmp_path: Path,
    secret: None,
) -> None:
    client = _client(_project(tmp_path, endpoint, winrm_certificates[0]))
    transport = WinRMTransport(client, tmp_path)
    with transport.session(client.hosts["win01"]) as session:
        outputs = [
            session.run(script, 30).stdout
            for script in (
                "hostname",
                "$PSVersionTable.PSVersion.ToString()",
                "(Get-CimInstance Win32_OperatingSystem).Caption",
            )
        ]
    assert outputs == [
        "WIN-LAB01\r\n",
        "5.1.17763.316\r\n",
        "Microsoft Windows Server 2019 Standard\r\n",
    ]
    assert endpoint.shells_created == 1
    assert endpoint.shells == {}  # closed afterwards


@pytest.mark.parametrize(
    ("script", "kind", "message"),
    [
        (
            "Get-Item C:\\nonexistent",
            ErrorKind.COMMAND_FAILED,
            "Get-Item : Cannot find path 'C:\\nonexistent' because it does not exist.",
        ),
        (
            "Get-Frobnicator",
            ErrorKind.COMMAND_FAILED,
            "Get-Frobnicator : The term 'Get-Frobnicator' is not recognized as the name of a",
        ),
        ("Start-Sleep -Seconds 30", ErrorKind.TIMEOUT, "did not finish within 3s"),
    ],
)
def test_failures_are_classified(
    endpoint: WinRMEndpoint,
    winrm_certificates: tuple[Path, Path, Path],
    tmp_path: Path,
    secret: None,
    script: str,
    kind: ErrorKind,
    message: str,
) -> None:
    client = _client(_project(tmp_path, endpoint, winrm_certificates[0]))
    result = WinRMTransport(client, tmp_path).run(
        client.hosts["win01"], script, sudo=False, timeout=3
    )
    assert result.error is kind
    assert message in result.message


def test_operation_timeouts_are_retried_until_the_command_ends(
    endpoint: WinRMEndpoint,
    winrm_certificates: tuple[Path, Path, Path],
    tmp_path: Path,
    secret: None,
) -> None:
    client = _client(_project(tmp_path, endpoint, winrm_certificates[0]))
    # timeout 6 s: each Receive waits 3 s, faults once, and the command ends at 4.5 s.
    result = WinRMTransport(client, tmp_path).run(
        client.hosts["win01"], "Start-Sleep -Milliseconds 4500", sudo=False, timeout=6
    )
    assert result.ok, result.message


def test_wrong_password_is_auth_failed(
    endpoint: WinRMEndpoint,
    winrm_certificates: tuple[Path, Path, Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("WIN_PASSWORD", "wrong")
    client = _client(_project(tmp_path, endpoint, winrm_certificates[0]))
    result = WinRMTransport(client, tmp_path).run(
        client.hosts["win01"], "hostname", sudo=False, timeout=10
    )
    assert result.error is ErrorKind.AUTH_FAILED


def test_an_untrusted_certificate_is_refused(
    endpoint: WinRMEndpoint, tmp_path: Path, secret: None
) -> None:
    client = _client(_project(tmp_path, endpoint, ca=None))
    result = WinRMTransport(client, tmp_path).run(
        client.hosts["win01"], "hostname", sudo=False, timeout=10
    )
    assert result.error is ErrorKind.TLS_UNTRUSTED
    assert "not issued by a public CA (unable to get local issuer certificate)" in result.message
    assert "winrm_ca_trust_path" in result.message  # the setting that fixes it
    assert endpoint.scripts == []  # nothing was sent


@pytest.mark.parametrize(
    ("certificate", "message"),
    [
        ("other-address", "TLS certificate is not issued for {address} (IP address mismatch"),
        ("expired", "TLS certificate is out of date (certificate has expired); renew it"),
        ("other-ca", "not issued by the CA in winrm_ca_trust_path contoso-ca.pem"),
    ],
)
def test_each_untrusted_certificate_says_what_to_fix(
    winrm_address: str, tmp_path: Path, secret: None, certificate: str, message: str
) -> None:
    # The CA named in the inventory issued the certificate, except for "other-ca".
    ca, cert, key = make_certificates(
        tmp_path / "tls",
        "127.0.0.2" if certificate == "other-address" else winrm_address,
        expired=certificate == "expired",
    )
    if certificate == "other-ca":
        ca = make_certificates(tmp_path / "other-ca", winrm_address)[0]
    users = {"svc-msp": PASSWORD}
    with WinRMEndpoint(winrm_address, ANSWERS, users=users, certificate=(cert, key)) as endpoint:
        client = _client(_project(tmp_path / "p", endpoint, ca))
        result = WinRMTransport(client, tmp_path / "p").run(
            client.hosts["win01"], "hostname", sudo=False, timeout=10
        )
    assert result.error is ErrorKind.TLS_UNTRUSTED
    assert message.format(address=winrm_address) in result.message
    assert endpoint.scripts == []


def test_an_untrusted_certificate_is_not_retried(endpoint: WinRMEndpoint, tmp_path: Path) -> None:
    root = _project(tmp_path / "p", endpoint, ca=None)
    options = ["--client", "contoso", "--hosts", "win01", "--retries", "2", "--format", "json"]
    result = subprocess.run(
        [sys.executable, "-m", "mspauto", "--project", str(root), "exec", *options, "hostname"],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "WIN_PASSWORD": PASSWORD, "MSPAUTO_STATE_DIR": str(tmp_path / "s")},
    )
    (win01,) = json.loads(result.stdout)["results"]
    assert (win01["error"], win01["attempts"]) == ("tls_untrusted", 1)


def test_a_listener_without_tls_is_not_an_untrusted_certificate(
    winrm_address: str, winrm_certificates: tuple[Path, Path, Path], tmp_path: Path, secret: None
) -> None:
    users = {"svc-msp": PASSWORD}
    with WinRMEndpoint(winrm_address, ANSWERS, users=users) as plain_http:
        client = _client(_project(tmp_path, plain_http, winrm_certificates[0]))
        result = WinRMTransport(client, tmp_path).run(
            client.hosts["win01"], "hostname", sudo=False, timeout=10
        )
    assert result.error is ErrorKind.UNREACHABLE
    assert result.message == (
        "TLS handshake failed: wrong version number (is the port an HTTPS listener?)"
    )


def test_a_missing_ca_file_is_a_config_error(
    endpoint: WinRMEndpoint,
    winrm_certificates: tuple[Path, Path, Path],
    tmp_path: Path,
    secret: None,
) -> None:
    client = _client(_project(tmp_path, endpoint, winrm_certificates[0]))
    (tmp_path / "contoso-ca.pem").unlink()
    result = WinRMTransport(client, tmp_path).run(
        client.hosts["win01"], "hostname", sudo=False, timeout=10
    )
    assert result.error is ErrorKind.CONFIG
    assert result.message == "winrm_ca_trust_path contoso-ca.pem: no such file in the project"


def test_an_answer_without_a_source_is_refused(tmp_path: Path) -> None:
    fixture = tmp_path / "answers.yaml"
    fixture.write_text(
        "- {pattern: '^hostname', stdout: x, source: modelled, note: the lab's name}\n"
        "- {pattern: '^whoami', stdout: y}\n"
    )
    with pytest.raises(ValueError, match=r"answers.yaml, answer 2: source must be a URL"):
        load_answers(fixture)
