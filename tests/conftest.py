"""Shared fixtures: scratch projects, and the lab fleet (up once per session)."""

from __future__ import annotations

import os
import random
import shutil
import socket
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from mspauto.lab.fleet import Lab
from mspauto.lab.system import mounts_under
from mspauto.lab.testing import lab_unavailable, running_lab

REPO = Path(__file__).resolve().parent.parent

NO_SKIPS = os.environ.get("MSPAUTO_TEST_NO_SKIPS") == "1"
"""Set by tox (``make test``, CI): a test skipped there (the lab, PostgreSQL, minisign or
setpriv missing) is a test that could not fail, so it fails instead. A developer's
quick ``pytest`` may still skip what their machine lacks."""


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()  # type: ignore[attr-defined]
    if NO_SKIPS and report.skipped and not hasattr(report, "wasxfail"):
        report.outcome = "failed"
        report.longrepr = (
            f"skipped where every test must run (MSPAUTO_TEST_NO_SKIPS=1): {report.longrepr}"
        )


@pytest.fixture
def example_project(tmp_path: Path) -> Path:
    """A scratch copy of the repository's example project (inventory/ and policies/)."""
    project = tmp_path / "example"
    project.mkdir()
    shutil.copytree(REPO / "inventory", project / "inventory")
    shutil.copytree(REPO / "policies", project / "policies")
    return project


@pytest.fixture
def empty_project(tmp_path: Path) -> Path:
    """A project with one contract ('std') and no client yet."""
    project = tmp_path / "empty"
    (project / "inventory").mkdir(parents=True)
    (project / "policies").mkdir()
    (project / "policies" / "contract.yaml").write_text("kind: contract\nname: std\n")
    return project


LAB_HOSTS = 14  # every baseline x backup state on both clients, plus the three faults


@pytest.fixture(scope="session")
def address_block() -> Callable[[int], str]:
    """Loopback addresses no other test run is using: ``block(n)`` is ``127.B.n.10``.

    Each session picks its own second octet, so two test runs on one machine (a
    developer's and CI's) never bind the same addresses.
    """
    chooser = random.Random(os.getpid())
    for _ in range(100):
        base = chooser.randint(100, 250)
        if _free(f"127.{base}.0.10"):
            return lambda n: f"127.{base}.{n}.10"
    raise RuntimeError("no free loopback block found for the lab")


def _free(address: str) -> bool:
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((address, 22))
        except OSError:
            return False
    return True


@pytest.fixture(scope="session")
def lab(
    tmp_path_factory: pytest.TempPathFactory, address_block: Callable[[int], str]
) -> Iterator[Lab]:
    """A 14-host lab over acme and globex, with faults, on this session's first block."""
    reason = lab_unavailable()
    if reason:
        pytest.skip(f"lab unavailable: {reason}")
    directory = tmp_path_factory.mktemp("lab") / "fleet"
    with running_lab(
        directory, LAB_HOSTS, ["acme", "globex"], first_address=address_block(0)
    ) as fleet:
        yield fleet
    assert not mounts_under(directory), "lab down left mounts behind"


STOCK_HOSTS = 2  # one to audit as it is, one to plant odd configuration on


@pytest.fixture(scope="session")
def stock_lab(
    tmp_path_factory: pytest.TempPathFactory, address_block: Callable[[int], str]
) -> Iterator[Lab]:
    """Two stock hosts of client 'hooli' (Debian minbase with openssh-server, sudo and
    python3, nothing planted) on this session's sixth block."""
    reason = lab_unavailable()
    if reason:
        pytest.skip(f"lab unavailable: {reason}")
    directory = tmp_path_factory.mktemp("stock-lab") / "fleet"
    with running_lab(
        directory, 0, ["hooli"], faults=False, first_address=address_block(5), stock=STOCK_HOSTS
    ) as fleet:
        yield fleet
    assert not mounts_under(directory), "lab down left mounts behind"


@pytest.fixture(scope="session")
def winrm_address(address_block: Callable[[int], str]) -> str:
    """This session's loopback address for the WinRM test endpoint (a "Windows host")."""
    return address_block(90).removesuffix(".10") + ".1"


@pytest.fixture(scope="session")
def winrm_certificates(
    tmp_path_factory: pytest.TempPathFactory, winrm_address: str
) -> tuple[Path, Path, Path]:
    """A private CA and a server certificate for the endpoint: (ca, cert, key)."""
    from mspauto.lab.winrm_endpoint import make_certificates

    return make_certificates(tmp_path_factory.mktemp("tls"), winrm_address)


@pytest.fixture(scope="session")
def debian_rules() -> set[str]:
    """Every rule id of the shipped debian-cis pack."""
    from mspauto.baseline.rules import RulePack
    from mspauto.config import Settings
    from mspauto.project import load_project

    project = load_project(Settings.load(REPO))
    pack = next(
        p.policy
        for p in project.policies
        if isinstance(p.policy, RulePack) and p.policy.name == "debian-cis"
    )
    return {rule.id for rule in pack.rules}


DNF_CLIENT = "vandelay"


@pytest.fixture(scope="session")
def dnf_lab(
    tmp_path_factory: pytest.TempPathFactory, address_block: Callable[[int], str]
) -> Iterator[Lab]:
    """Two dnf hosts of client 'vandelay' (Debian with dnf 4 managing the lab's RPMs:
    not RHEL) in this session's block 40: vandelay-dnf01 for reading, vandelay-dnf02
    for installing."""
    from mspauto.lab.rpm import rpm_tools_missing

    reason = lab_unavailable() or rpm_tools_missing()
    if reason:
        pytest.skip(f"lab unavailable: {reason}")
    directory = tmp_path_factory.mktemp("dnf-lab") / "fleet"
    fleet = Lab(directory)
    try:
        fleet.up(
            0,
            [DNF_CLIENT],
            faults=False,
            first_address=address_block(40),
            dnf=2,
            say=lambda _: None,
        )
        yield fleet
    finally:
        fleet.down(say=lambda _: None)
    assert not mounts_under(directory), "lab down left mounts behind"
