"""Planning a lab fleet (pure): names, addresses, states, faults."""

from __future__ import annotations

from collections import Counter

import pytest

from mspauto.lab.plan import BACKUP_STATES, inventory_document, plan_fleet


def test_hosts_spread_over_clients_on_consecutive_addresses() -> None:
    plans = plan_fleet(5, ["acme", "globex"], faults=False)
    assert [(p.name, p.address) for p in plans] == [
        ("acme-lab01", "127.0.0.10"),
        ("globex-lab01", "127.0.0.11"),
        ("acme-lab02", "127.0.0.12"),
        ("globex-lab02", "127.0.0.13"),
        ("acme-lab03", "127.0.0.14"),
    ]


def test_each_client_gets_every_baseline_and_backup_state() -> None:
    plans = plan_fleet(12, ["acme", "globex"], faults=False)
    for client in ("acme", "globex"):
        mine = [p for p in plans if p.client == client]
        assert {p.baseline for p in mine} == {"compliant", "drifted"}
        assert {p.backup for p in mine} == set(BACKUP_STATES)


def test_faults_go_to_the_last_three_hosts() -> None:
    plans = plan_fleet(8, ["acme"], faults=True)
    assert [p.fault for p in plans] == [None] * 5 + ["sshd-down", "changed-key", "rejects-key"]
    assert Counter(p.fault for p in plan_fleet(8, ["acme"], faults=False)) == {None: 8}


def test_addresses_past_255_carry_into_the_next_octet() -> None:
    plans = plan_fleet(300, ["acme"], faults=False)
    assert plans[-1].address == "127.0.1.53"


@pytest.mark.parametrize("first", ["10.0.0.1", "127.255.255.250"])
def test_only_loopback_is_ever_used(first: str) -> None:
    with pytest.raises(ValueError, match=r"127\.0\.0\.0/8"):
        plan_fleet(10, ["acme"], faults=False, first_address=first)


def test_inventory_document_names_the_key_and_tags_the_state() -> None:
    plans = plan_fleet(2, ["acme"], faults=False)
    document = inventory_document("acme", plans, "/lab/keys/lab_ed25519", "lab-standard")
    assert document["client"]["timezone"] == "America/New_York"
    assert document["client"]["credentials"]["lab"]["private_key"] == {
        "file": "/lab/keys/lab_ed25519"
    }
    assert document["hosts"]["acme-lab02"]["tags"] == ["lab", "drifted", "backup-restic-stale"]


@pytest.mark.parametrize("client", ["../../escape", "Acme", "a b", ""])
def test_client_names_cannot_leave_the_lab_folder(client: str) -> None:
    with pytest.raises(ValueError, match="not a valid client name"):
        plan_fleet(2, [client], faults=False)


def test_the_repository_address_is_loopback_too() -> None:
    with pytest.raises(ValueError, match=r"repository 126\.255\.255\.255"):
        plan_fleet(2, ["acme"], faults=False, first_address="127.0.0.0")


def test_stock_hosts_follow_the_planted_ones_and_plant_nothing() -> None:
    plans = plan_fleet(8, ["acme", "globex"], faults=True, stock=3)
    planted, stock = plans[:8], plans[8:]
    assert [p.fault for p in planted[-3:]] == ["sshd-down", "changed-key", "rejects-key"]
    assert [(p.name, p.address, p.baseline, p.backup, p.fault) for p in stock] == [
        ("acme-stock01", "127.0.0.18", "stock", None, None),
        ("globex-stock01", "127.0.0.19", "stock", None, None),
        ("acme-stock02", "127.0.0.20", "stock", None, None),
    ]
    document = inventory_document("acme", plans, "/lab/keys/lab_ed25519", "lab-standard")
    assert document["hosts"]["acme-stock01"] == {
        "address": "127.0.0.18",
        "tags": ["lab", "stock"],
        "vars": {},
    }


def test_a_lab_of_stock_hosts_only() -> None:
    plans = plan_fleet(0, ["acme"], faults=False, stock=1)
    assert [(p.name, p.baseline) for p in plans] == [("acme-stock01", "stock")]
    with pytest.raises(ValueError, match="at least one host"):
        plan_fleet(0, ["acme"], faults=False)


def test_stock_hosts_stay_inside_loopback_too() -> None:
    with pytest.raises(ValueError, match=r"127\.0\.0\.0/8"):
        plan_fleet(2, ["acme"], faults=False, first_address="127.255.255.252", stock=4)


def test_dnf_hosts_come_last_and_say_platform_rhel_in_the_inventory() -> None:
    plans = plan_fleet(2, ["acme", "globex"], faults=False, stock=1, dnf=3)
    assert [(p.name, p.address, p.platform) for p in plans[3:]] == [
        ("acme-dnf01", "127.0.0.13", "rhel"),
        ("globex-dnf01", "127.0.0.14", "rhel"),
        ("acme-dnf02", "127.0.0.15", "rhel"),
    ]
    assert {p.platform for p in plans[:3]} == {"debian"}
    document = inventory_document("acme", plans, "/lab/keys/lab_ed25519", "lab-standard")
    assert document["client"]["platform"] == "debian"
    assert document["hosts"]["acme-dnf01"] == {
        "address": "127.0.0.13",
        "platform": "rhel",
        "tags": ["lab", "dnf"],
        "vars": {},
    }
    assert "platform" not in document["hosts"]["acme-lab01"]


def test_a_lab_of_dnf_hosts_only_stays_inside_loopback() -> None:
    assert [p.name for p in plan_fleet(0, ["acme"], faults=False, dnf=1)] == ["acme-dnf01"]
    with pytest.raises(ValueError, match=r"127\.0\.0\.0/8"):
        plan_fleet(0, ["acme"], faults=False, first_address="127.255.255.254", dnf=3)
    with pytest.raises(ValueError, match="cannot be negative"):
        plan_fleet(1, ["acme"], faults=False, dnf=-1)
