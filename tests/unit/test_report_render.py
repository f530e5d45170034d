"""The monthly report as the client, their spreadsheet and other tools meet it: the PDF
page a client opens, the HTML, the CSV files opened in a spreadsheet, the JSON read by a
script; hostile names stay text everywhere, and a month without evidence says "no data"."""

from __future__ import annotations

import base64
import csv
import dataclasses
import json
import multiprocessing
import os
import re
import signal
from collections import Counter
from datetime import timedelta
from pathlib import Path

import pypdfium2 as pdfium
import pytest
from report_sample import empty_report, sample_report

from mspauto.report import charts
from mspauto.report.render import (
    FINDINGS_COLUMNS,
    HOSTS_COLUMNS,
    PdfRenderer,
    RenderError,
    render_html,
    write_all,
    write_csv,
    write_json,
    write_pdf,
)
from mspauto.sla.model import (
    BackupAsset,
    BaselineHost,
    Breach,
    ExceptionItem,
    Headline,
    MonthlyReport,
    PatchHost,
)

SCRIPT = "<script>alert(1)</script>"
TEMPLATE = "{{ 7*7 }}"
NBSP = "\u00a0"
MINUS = "\u2212"


def pdf_text(path: Path) -> list[str]:
    """The text of every page of a PDF."""
    doc = pdfium.PdfDocument(str(path))
    try:
        return [str(page.get_textpage().get_text_range()) for page in doc]
    finally:
        doc.close()


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def visible(html: str) -> str:
    """The HTML without its stylesheet and the charts' data: URIs (what a reader sees,
    plus the markup around it)."""
    html = re.sub(r"<style>.*?</style>", "", html, flags=re.S)
    return re.sub(r'src="data:[^"]*"', 'src=""', html)


def charts_of(html: str) -> list[str]:
    """The SVG of each chart in a report page, in page order."""
    uris = re.findall(r'src="data:image/svg\+xml;base64,([^"]+)"', html)
    return [base64.b64decode(uri).decode() for uri in uris]


def renamed(report: MonthlyReport, old: str, new: str) -> MonthlyReport:
    """``report`` with host ``old`` called ``new`` in every area."""

    def host(value: str) -> str:
        return new if value == old else value

    patching = dataclasses.replace(
        report.patching,
        hosts=[dataclasses.replace(h, host=host(h.host)) for h in report.patching.hosts],
        items=[dataclasses.replace(i, host=host(i.host)) for i in report.patching.items],
        kev=[dataclasses.replace(i, host=host(i.host)) for i in report.patching.kev],
    )
    backups = dataclasses.replace(
        report.backups,
        assets=[dataclasses.replace(a, host=host(a.host)) for a in report.backups.assets],
        breaches=[dataclasses.replace(b, host=host(b.host)) for b in report.backups.breaches],
    )
    baseline = dataclasses.replace(
        report.baseline,
        hosts=[dataclasses.replace(h, host=host(h.host)) for h in report.baseline.hosts],
        drift=[dataclasses.replace(d, host=host(d.host)) for d in report.baseline.drift],
    )
    return dataclasses.replace(report, patching=patching, backups=backups, baseline=baseline)


@pytest.fixture(scope="module")
def sample() -> MonthlyReport:
    return sample_report()


@pytest.fixture(scope="module")
def files(sample: MonthlyReport, tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """Every format of the 3-host sample, written once for the module."""
    return write_all(sample, tmp_path_factory.mktemp("report") / "acme" / "2026-11")


def test_write_all_writes_every_format(files: list[Path]) -> None:
    assert [p.name for p in files] == [
        "report.html",
        "report.pdf",
        "hosts.csv",
        "findings.csv",
        "report.json",
        "assessment-results.json",
    ]
    assert all(p.stat().st_size > 0 for p in files)
    assert files[1].read_bytes().startswith(b"%PDF-")


def test_a_renderer_that_dies_fails_its_report_and_serves_the_next(
    sample: MonthlyReport, tmp_path: Path
) -> None:
    """The PDF is laid out by a second process; killed mid-way (say by the kernel's OOM
    killer), its report fails with one line and the next report gets a new one."""
    html = render_html(sample)
    pdf = tmp_path / "report.pdf"
    with PdfRenderer() as renderer:
        stopped = r"renderer stopped before writing report\.pdf"
        with pytest.raises(RenderError, match=stopped), renderer.writing(html, pdf):
            for child in multiprocessing.active_children():
                os.kill(child.pid or 0, signal.SIGKILL)
        assert not pdf.exists()
        files = write_all(sample, tmp_path / "next", renderer)
        assert files[1].read_bytes().startswith(b"%PDF-")
        # Killed while idle (between two reports): the next report still gets its PDF.
        for child in multiprocessing.active_children():
            os.kill(child.pid or 0, signal.SIGKILL)
            child.join()
        again = write_all(sample, tmp_path / "again", renderer)
    assert again[1].read_bytes().startswith(b"%PDF-")


def test_pdf_first_page_is_a_rendered_page(files: list[Path]) -> None:
    doc = pdfium.PdfDocument(str(files[1]))
    try:
        width, height = doc[0].get_size()
        image = doc[0].render(scale=50 / 72).to_pil().convert("RGB")
    finally:
        doc.close()
    assert (round(width), round(height)) == (595, 842)  # A4 in points
    colours = Counter({rgb: n for n, rgb in image.getcolors(maxcolors=1 << 24)})
    inked = sum(n for rgb, n in colours.items() if rgb != (255, 255, 255))
    assert inked / (image.width * image.height) > 0.1
    assert len(colours) > 50  # text, the score's band colour, the chart: not a blank page


def test_pdf_pages_carry_client_month_and_page_numbers(files: list[Path]) -> None:
    pages = pdf_text(files[1])
    assert len(pages) >= 5
    first = pages[0]
    for text in ("Acme Corp", "November 2026", "84.2", "fair", "America/New_York"):
        assert text in first
    for number, page in enumerate(pages, start=1):
        assert f"Page {number} of {len(pages)}" in page
    assert all("Acme Corp · November 2026" in page for page in pages[1:])


def test_html_shows_the_reports_figures(files: list[Path]) -> None:
    html = files[0].read_text(encoding="utf-8")
    for figure in ("84.2", "66.7%", "97.8%", "86.4", "<b>88</b> of <b>90</b>"):
        assert figure in html
    assert "<b>2</b> compliant" in html
    assert "<b>1</b> pending" in html
    assert "2 updates past their deadline (1 critical, 1 medium)" in html
    assert "1 RPO breach (" in html
    # Times in the client's zone, the zone named: EDT before the DST change on 11-01.
    assert "America/New_York" in html
    assert f"2026-11-30 05:00{NBSP}EST" in html  # the breach start, 10:00 UTC
    assert f"2026-11-20 23:00{NBSP}EST" in html  # the KEV due date
    assert f"2026-11-01 00:00{NBSP}EDT" in html  # the overdue restore drill
    assert "ongoing" in html
    assert "X11 needed by the CAD team&#39;s legacy viewer" in html
    assert "J. Smith (IT manager)" in html
    assert "2027-03-31" in html
    # The open item says which clock its deadline counts from.
    assert "at release" in html
    # Scheduled runs that did not run fully: in the summary and listed, newest first.
    assert "2 of 62 scheduled runs did not run fully (1 skipped, 1 interrupted)" in html
    listed = html.index(f"2026-11-12 07:30{NBSP}EST")
    assert listed < html.index(f"2026-11-09 05:00{NBSP}EST") < html.index("its maintenance")


def test_trend_arrows_follow_higher_is_better(sample: MonthlyReport) -> None:
    report = dataclasses.replace(
        sample,
        headlines=[
            Headline("Patch compliance", 66.7, "%", 100.0),
            Headline("Median days to patch", 3.0, "days", 5.0, higher_is_better=False),
            Headline("Unchecked hosts", 4.0, "hosts", 1.0, higher_is_better=False),
        ],
    )
    html = render_html(report)

    def change(label: str) -> str:
        row = re.search(rf"<td>{label}</td>.*?</tr>", html, re.S)
        assert row is not None, label
        return row.group(0)

    assert f'trend-worse"><span class="arrow">▼</span> {MINUS}33.3 pts' in change(
        "Patch compliance"
    )
    assert f'trend-better"><span class="arrow">▼</span> {MINUS}2.0 days' in change(
        "Median days to patch"
    )
    assert 'trend-worse"><span class="arrow">▲</span> +3 hosts' in change("Unchecked hosts")


def test_hostile_text_is_escaped_and_never_run(sample: MonthlyReport, tmp_path: Path) -> None:
    report = renamed(sample, "web3", SCRIPT)
    report = renamed(report, "web2", TEMPLATE + "$\\undefined{x}$")  # not mathtext
    report = renamed(report, "web1", "two\nlines")
    report = dataclasses.replace(
        report,
        client_name=f"{SCRIPT} {TEMPLATE}",
        exceptions=[
            ExceptionItem("waiver", TEMPLATE, (SCRIPT,), f"because {SCRIPT}", TEMPLATE),
        ],
        missing_data=[SCRIPT],
    )
    html = render_html(report)
    assert "<script" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert TEMPLATE in html
    assert not re.search(r"(?<![\d.])49(?![\d.])", visible(html))
    assert "<td>two\ufffdlines " in html  # a newline cannot break the appendix's columns

    write_pdf(report, tmp_path / "report.pdf")
    pages = pdf_text(tmp_path / "report.pdf")
    assert SCRIPT in pages[0]  # the client name, as text
    assert all(f"{SCRIPT} {TEMPLATE}" in page for page in pages[1:])  # the running header
    assert SCRIPT in pages[-1] and TEMPLATE in pages[-1]  # the appendix's host names


def test_csv_rows_match_the_report(files: list[Path], sample: MonthlyReport) -> None:
    hosts = read_csv(files[2])
    assert list(hosts[0]) == list(HOSTS_COLUMNS)
    assert [h["host"] for h in hosts] == ["web1", "web2", "web3"]
    web3 = hosts[2]
    assert (web3["patch_state"], web3["patch_pending"], web3["patch_overdue"]) == (
        "pending",
        "1",
        "1",
    )
    assert web3["checked_by_every_check"] == "yes"
    assert (hosts[0]["backup_jobs_ok"], hosts[0]["backup_jobs_total"]) == ("0", "1")
    assert hosts[0]["baseline_score"] == "86.4"
    assert hosts[0]["last_patch_scan"] == "2026-12-01T00:00:00+00:00"

    findings = read_csv(files[3])
    assert list(findings[0]) == list(FINDINGS_COLUMNS)
    assert Counter(f["area"] for f in findings) == {
        "patch": len(sample.patching.items),
        "backup": len(sample.backups.assets),
        "backup breach": len(sample.backups.breaches),
        "baseline failure": len(sample.baseline.top_failing),
        "baseline drift": len(sample.baseline.drift),
        "exception": len(sample.exceptions),
        "scheduled run": len(sample.schedule.problems),
    }
    skipped = next(f for f in findings if f["area"] == "scheduled run")
    assert (skipped["subject"], skipped["state"], skipped["due"]) == (
        "nightly/backup",
        "skipped",
        "2026-11-07T12:30:00+00:00",
    )
    assert skipped["reason"].startswith("missed while the control node was down")
    curl = next(f for f in findings if f["subject"] == "curl")
    assert (curl["host"], curl["state"], curl["severity"], curl["clock"]) == (
        "web3",
        "overdue",
        "critical",
        "release",
    )
    assert curl["deadline"] == "2026-11-17T04:00:00+00:00"
    assert curl["installed_at"] == ""
    kev = next(f for f in findings if f["subject"] == "libxml2")
    assert (kev["known_exploited"], kev["exploited_due"]) == ("yes", "2026-11-21T04:00:00+00:00")
    waiver = next(f for f in findings if f["state"] == "waiver")
    assert (waiver["approved_by"], waiver["expires"]) == ("J. Smith (IT manager)", "2027-03-31")


@pytest.mark.parametrize("formula", ["=cmd|' /C calc'!A0", "+1+1", "-2+3", "@SUM(A1:A9)", "\t=1"])
def test_csv_cells_are_not_spreadsheet_formulas(
    sample: MonthlyReport, tmp_path: Path, formula: str
) -> None:
    report = renamed(sample, "web3", formula)
    report = dataclasses.replace(
        report,
        exceptions=[ExceptionItem("hold", "package:x", (formula,), formula)],
    )
    hosts, findings = write_csv(report, tmp_path)
    host_cells = [h["host"] for h in read_csv(hosts)]
    assert "'" + formula in host_cells
    assert formula not in host_cells
    exception = next(f for f in read_csv(findings) if f["area"] == "exception")
    assert exception["reason"] == "'" + formula
    assert exception["host"] == "'" + formula
    assert "web1" in host_cells  # ordinary text is left alone


def test_json_round_trips_with_stable_bytes(
    files: list[Path], sample: MonthlyReport, tmp_path: Path
) -> None:
    data = files[4].read_bytes()
    assert data.endswith(b"}\n")
    assert json.loads(data) == json.loads(json.dumps(sample.as_dict()))
    assert json.loads(data)["patching"]["items"][0]["host"] == "web1"
    write_json(sample_report(), tmp_path / "again.json")
    assert (tmp_path / "again.json").read_bytes() == data
    assert b'"client": "acme"' in data and b'  "backups": {' in data  # indent 2, sorted


def test_json_keeps_non_ascii_as_utf8(sample: MonthlyReport, tmp_path: Path) -> None:
    write_json(dataclasses.replace(sample, client_name="Bäckerei Müller"), tmp_path / "r.json")
    raw = (tmp_path / "r.json").read_bytes()
    assert "Bäckerei Müller".encode() in raw
    assert json.loads(raw)["client_name"] == "Bäckerei Müller"


def test_empty_month_says_no_data_never_100_percent(tmp_path: Path) -> None:
    report = empty_report()
    html = visible(render_html(report))
    assert "100%" not in html and "100.0%" not in html
    assert html.count("no data") >= 10
    for gap in report.missing_data:
        assert gap in html
    assert "No patch scan this month: nothing can be judged." in html

    write_pdf(report, tmp_path / "report.pdf")
    first = pdf_text(tmp_path / "report.pdf")[0]
    assert "no data" in first
    assert "Missing data this month" in first
    assert "100%" not in first and "100.0%" not in first

    hosts = read_csv(write_csv(report, tmp_path)[0])
    assert [(h["host"], h["checked_by_every_check"], h["missed_by"]) for h in hosts] == [
        ("web1", "no", "patch"),
        ("web2", "no", "patch"),
    ]


def test_charts_without_data_say_so(sample: MonthlyReport, files: list[Path]) -> None:
    empty = empty_report()
    drawn = charts_of(files[0].read_text(encoding="utf-8"))
    blank = [
        charts.headline_chart(empty),
        charts.latency_chart(empty),
        charts.baseline_chart(empty),
    ]
    for with_data, without in zip(drawn, blank, strict=True):
        assert f'id="{charts.NO_DATA}"' in without
        assert f'id="{charts.NO_DATA}"' not in with_data
    # Low and unrated had no install: "no data" in their slot, not a zero bar.
    latency = drawn[1]
    assert [s.severity for s in sample.patching.latency][3:] == ["low", "unrated"]
    assert f'id="{charts.NO_DATA}-3"' in latency and f'id="{charts.NO_DATA}-4"' in latency
    assert f'id="{charts.NO_DATA}-2"' not in latency


def test_pages_and_charts_are_deterministic(files: list[Path]) -> None:
    html = render_html(sample_report())
    assert html == files[0].read_text(encoding="utf-8")
    svgs = charts_of(html)
    assert len(svgs) == 3
    assert all(svg.startswith("<svg") for svg in svgs)
    assert svgs[0] == charts.headline_chart(sample_report())


def test_large_fleet_keeps_the_pdf_bounded() -> None:
    html = render_html(sample_report(hosts=30))
    # Every host has its appendix line; only the asset needing attention is a table row.
    assert all(re.search(rf"<td>web{i} ", html) for i in range(1, 31))
    assert "29 more were fine all month" in html
    assets = re.search(r'<table class="assets">.*?</table>', html, re.S)
    assert assets is not None
    assert re.findall(r'<td class="wrap">(web\d+)</td>', assets.group(0)) == ["web1"]


def test_thousands_of_breaches_show_the_worst_and_the_csv_has_every_one(
    sample: MonthlyReport, tmp_path: Path
) -> None:
    """Hourly checks of a large fleet find thousands of breaches; laying each out took
    WeasyPrint 10 s. The page shows the ongoing and the longest; the CSV every one."""
    start = sample.period.start
    breaches = [
        Breach(f"web{n}", "etc", start + timedelta(hours=n), start + timedelta(hours=n + 1), 1.0)
        for n in range(1, 3000)
    ]
    breaches[1234] = Breach("web-long", "db", start, start + timedelta(days=3), 72.0)
    breaches.append(Breach("web-now", "www", start, None, 90.5))
    report = dataclasses.replace(
        sample, backups=dataclasses.replace(sample.backups, breaches=breaches)
    )
    html = render_html(report)
    table = re.search(r'<table class="breaches">.*?</table>', html, re.S)
    assert table is not None
    hosts = re.findall(r'<td class="wrap">([\w-]+)</td>\s*<td class="wrap">', table.group(0))
    assert len(hosts) == 40
    assert hosts[:2] == ["web-now", "web-long"]
    assert "2960 more breaches are not shown here: every one is in findings.csv." in html
    rows = [r for r in read_csv(write_csv(report, tmp_path)[1]) if r["area"] == "backup breach"]
    assert len(rows) == 3000
    ongoing = next(r for r in rows if r["host"] == "web-now")
    assert (ongoing["subject"], ongoing["state"], ongoing["breach_end"], ongoing["hours"]) == (
        "www",
        "ongoing",
        "",
        "90.5",
    )


def test_hosts_missing_from_some_area_still_get_a_row(
    sample: MonthlyReport, tmp_path: Path
) -> None:
    extra_asset = BackupAsset(
        "db1", "pg", "restic", "failed", None, 3, 0, None, None, None, None, None, "exit 1"
    )
    report = dataclasses.replace(
        sample,
        patching=dataclasses.replace(
            sample.patching,
            hosts=[*sample.patching.hosts, PatchHost("old1", "compliant", None, 0, 0, 0)],
        ),
        backups=dataclasses.replace(sample.backups, assets=[*sample.backups.assets, extra_asset]),
        baseline=dataclasses.replace(
            sample.baseline,
            hosts=[
                *sample.baseline.hosts,
                BaselineHost("web10", "debian-cis", None, None, 0, 0, 0, 0, None, "unreachable"),
            ],
        ),
        coverage=dataclasses.replace(sample.coverage, extra=["old1"]),
    )
    hosts = read_csv(write_csv(report, tmp_path)[0])
    assert [h["host"] for h in hosts] == ["db1", "web1", "web2", "web3", "web10"]
    db1 = hosts[0]
    assert (db1["patch_state"], db1["backup_jobs_ok"], db1["oldest_last_good_backup"]) == (
        "",
        "0",
        "",
    )
    assert hosts[-1]["baseline_score"] == ""


def test_kev_item_installed_after_its_due_date_is_late(
    sample: MonthlyReport, files: list[Path]
) -> None:
    assert '<td class="ok">installed in time</td>' in files[0].read_text(encoding="utf-8")
    kev = sample.patching.kev[0]
    assert kev.exploited_due is not None
    late = dataclasses.replace(kev, installed_at=kev.exploited_due.replace(day=25))
    report = dataclasses.replace(sample, patching=dataclasses.replace(sample.patching, kev=[late]))
    assert '<td class="bad">installed late</td>' in render_html(report)
