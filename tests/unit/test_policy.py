"""Policy models and their JSON Schema."""

from __future__ import annotations

import json
from datetime import date, timedelta
from pathlib import Path

import jsonschema
import pytest
from pydantic import ValidationError

from mspauto.config import Settings
from mspauto.fields import format_duration, parse_duration
from mspauto.policy.models import Contract, PatchPolicy, Waiver
from mspauto.policy.schema import inventory_schema, policy_schema
from mspauto.project import load_project
from mspauto.yamlsource import load_yaml_documents

REPO = Path(__file__).resolve().parent.parent.parent


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("30m", timedelta(minutes=30)),
        ("24h", timedelta(hours=24)),
        ("14d", timedelta(days=14)),
        ("2w", timedelta(days=14)),
        (" 90s ", timedelta(seconds=90)),
    ],
)
def test_durations(text: str, expected: timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize("text", ["24 hours", "1.5h", "", "d", "-3d"])
def test_bad_durations_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match="duration like"):
        parse_duration(text)


def test_duration_round_trips_through_text() -> None:
    assert format_duration(timedelta(hours=36)) == "36h"
    assert format_duration(timedelta(days=14)) == "14d"


def test_example_policies_load_with_their_meaning() -> None:
    project = load_project(Settings.load(REPO))
    by_name = {p.policy.name: p.policy for p in project.policies}
    linux = by_name["linux-monthly"]
    assert isinstance(linux, PatchPolicy)
    assert linux.schedule.timezone == "client"
    assert [stage.ring for stage in linux.rollout] == ["canary", "pilot", "broad"]
    assert linux.approvals[2].defer == timedelta(days=14)
    standard = by_name["standard"]
    assert isinstance(standard, Contract)
    assert standard.patch_deadlines["critical"] == timedelta(days=14)
    waiver = by_name["acme-legacy-ftp-root"]
    assert isinstance(waiver, Waiver) and waiver.subject == "rule:ssh-root-login-disabled"


def test_patch_policy_defaults_approve_everything_and_reboot_if_required() -> None:
    policy = PatchPolicy.model_validate(
        {
            "kind": "patch",
            "name": "p",
            "targets": {"clients": ["*"]},
            "schedule": {"cron": "0 2 * * sat", "timezone": "Europe/Berlin"},
        }
    )
    assert [rule.action for rule in policy.approvals] == ["auto"]
    assert policy.reboot.policy == "if-required"


def test_contract_needs_a_deadline_for_every_severity() -> None:
    with pytest.raises(ValidationError, match="missing: low, unrated"):
        Contract.model_validate(
            {
                "kind": "contract",
                "name": "c",
                "patch_deadlines": {"critical": "2d", "high": "7d", "medium": "30d"},
            }
        )


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        (
            ("  critical: 14d", "  critical: 0d"),
            "policies/contracts/standard.yaml:7 patch_deadlines.critical: a deadline of 0 "
            "makes every update late the moment it is released; give the time the contract "
            "allows (e.g. 14d)",
        ),
        (
            ("backup_success_percent:", "backup_success_percentage:"),
            "policies/contracts/standard.yaml:14 backup_success_percentage: unknown key "
            "(did you mean 'backup_success_percent'?)",
        ),
    ],
    ids=["bad-value", "unknown-key"],
)
def test_an_invalid_contract_is_one_error_not_also_unknown_to_its_clients(
    example_project: Path, edit: tuple[str, str], expected: str
) -> None:
    standard = example_project / "policies" / "contracts" / "standard.yaml"
    standard.write_text(standard.read_text().replace(*edit))
    project = load_project(Settings.load(example_project), today=date(2026, 12, 1))
    assert [str(p) for p in project.errors] == [expected]


def test_every_example_document_matches_the_published_schema() -> None:
    validator = jsonschema.Draft202012Validator(policy_schema())
    documents = [
        doc
        for path in sorted((REPO / "policies").rglob("*.yaml"))
        for doc in load_yaml_documents(path, path.name)
    ]
    assert len(documents) >= 8
    for doc in documents:
        # Editors see YAML dates as text, as JSON has no date type.
        as_json = json.loads(json.dumps(doc.data, default=str))
        errors = [e.message for e in validator.iter_errors(as_json)]
        assert not errors, (doc.file, errors)


def test_schema_rejects_what_validate_rejects() -> None:
    validator = jsonschema.Draft202012Validator(policy_schema("contract"))
    assert not validator.is_valid({"kind": "contract", "name": "c", "colour": "red"})
    assert not validator.is_valid({"kind": "contract", "name": "c", "rpo": "24 hours"})


def test_inventory_schema_accepts_the_example_client_files() -> None:
    validator = jsonschema.Draft202012Validator(inventory_schema())
    for path in [REPO / "inventory" / "acme.yaml", *(REPO / "inventory" / "globex").glob("*")]:
        (doc,) = load_yaml_documents(path, path.name)
        assert not [e.message for e in validator.iter_errors(doc.data)], path


SHARED_GROUP_WAIVER = """kind: waiver
name: web-ftp-root
rule: ssh-root-login-disabled
targets: {TARGETS}
justification: Legacy FTP sync logs in as root until the new box is live.
approved_by: Acme's IT director
approved_on: 2026-11-01
expires: 2027-03-31
"""


@pytest.mark.parametrize(
    ("targets", "error"),
    [
        ("{groups: [web]}", True),  # approved by acme's manager, would excuse globex's too
        ("{groups: ['we*']}", True),
        ("{clients: [acme], groups: [web]}", False),
        ("{clients: ['*'], groups: [web]}", False),  # every client's, said on purpose
    ],
)
def test_a_group_name_two_clients_share_must_say_whose(
    tmp_path: Path, targets: str, error: bool
) -> None:
    (tmp_path / "inventory").mkdir()
    (tmp_path / "policies").mkdir()
    (tmp_path / "policies" / "c.yaml").write_text("kind: contract\nname: std\n")
    (tmp_path / "policies" / "w.yaml").write_text(SHARED_GROUP_WAIVER.replace("{TARGETS}", targets))
    for client in ("acme", "globex"):
        (tmp_path / "inventory" / f"{client}.yaml").write_text(
            f"client: {{name: {client}, display_name: {client}, timezone: UTC, "
            "contract: std, platform: debian, connection: local}\n"
            f"groups: {{web: {{}}}}\nhosts: {{{client}-web01: {{groups: [web]}}}}\n"
        )
    project = load_project(Settings.load(tmp_path), today=date(2026, 12, 1))
    messages = [str(p) for p in project.errors]
    if not error:
        assert messages == []
        return
    (message,) = messages
    assert message.startswith("policies/w.yaml:4 targets.groups: this waiver names groups (")
    assert message.endswith(
        "but no client, and so reaches the hosts of 2 clients (acme, globex); say whose with "
        "'clients: [...]' (clients: ['*'] if every client's groups are meant)"
    )
