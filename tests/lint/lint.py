"""Lint the exchanges the integration suite captured (tests/lint/run.sh calls this).

Each capture file holds one TCP connection in HTTPolice's `combined` format; its preamble names
the test and the side (see tests/it/harness/capture.rs). Every exchange is checked by HTTPolice, and
every message again by httplint (RFC 9110-era checks HTTPolice predates). Each notice is
attributed to the party that wrote the message:

  candor         candor's responses to the test clients and its requests to the test upstreams
  test-client    requests the tests write (some malformed on purpose)
  test-upstream  responses the tests' upstreams write (some dishonest on purpose)

An error-level notice (HTTPolice "error", httplint "bad") fails the run unless an entry of the
reviewed silence list (tests/lint/silence.txt) covers it. Exit status: 0 clean, 1 errors left,
2 bad input (an unreadable silence list, no captures).
"""

import argparse
import collections
import fnmatch
import os
import re
import sys

import httplint
import httpolice
from httpolice.exchange import check_exchange
from httpolice.framing1 import parse_streams
from httpolice.inputs.streams import parse_combined
from httpolice.reports.text import _piece_to_text
from httpolice.structure import okay
from httpolice.util.text import detypographize

PARTIES = ("candor", "test-client", "test-upstream")
# Notices HTTPolice files on the exchange itself when a stream cannot be parsed, by direction.
REQUEST_STREAM_BOXES = {1006, 1007}
# "Message is incomplete according to Content-Length", "Malformed Transfer-Encoding: chunked":
# what the last response of a connection looks like when its reader left before its end.
INCOMPLETE = {1004, 1005}


class SilenceEntry:
    def __init__(self, line_no, notice, party, tests, reason):
        self.line_no = line_no
        self.notice = notice
        self.party = party
        self.tests = tests
        self.reason = reason
        self.used = 0

    def covers(self, notice, party, test):
        return (
            fnmatch.fnmatchcase(notice, self.notice)
            and (self.party == "*" or self.party == party)
            and fnmatch.fnmatchcase(test, self.tests)
        )


def load_silence(path):
    """Parses `TOOL:ID PARTY TESTS -- reason` lines; `#` starts a comment line."""
    entries, problems = [], []
    with open(path, encoding="utf-8") as f:
        for line_no, line in enumerate(f, 1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            spec, sep, reason = line.partition(" -- ")
            fields = spec.split()
            where = f"{path}:{line_no}"
            if not sep or not reason.strip():
                problems.append(f"{where}: no reason (` -- why`)")
            elif len(fields) != 3:
                problems.append(f"{where}: want `TOOL:ID PARTY TESTS -- reason`")
            elif not re.fullmatch(r"(httpolice:(\d+|\*)|httplint:([A-Z0-9_]+|\*))", fields[0]):
                problems.append(f"{where}: notice must be httpolice:NNNN or httplint:NAME")
            elif fields[1] not in PARTIES + ("*",):
                problems.append(f"{where}: party must be one of {', '.join(PARTIES)} or *")
            elif fields[0].endswith("*") and fields[1] not in ("test-client", "test-upstream"):
                # Whatever a test sends on purpose may be waved through wholesale; what candor
                # sends is silenced one notice at a time.
                problems.append(f"{where}: a wildcard notice must name a test party")
            else:
                entries.append(SilenceEntry(line_no, fields[0], fields[1], fields[2],
                                            reason.strip()))
    return entries, problems


def read_preamble(path):
    with open(path, "rb") as f:
        head = f.read(4096).split(b"======== BEGIN INBOUND STREAM ========", 1)[0]
    meta = {}
    for line in head.decode("utf-8", "replace").splitlines():
        key, sep, value = line.partition(": ")
        if sep:
            meta[key.strip()] = value.strip()
    return meta


class Finding:
    def __init__(self, tool, ident, severity, party, test, path, message, title):
        self.ident = ident
        self.notice = f"{tool}:{ident}"
        self.severity = severity  # "error", "comment" or "debug"
        self.party = party
        self.test = test
        self.path = path
        self.message = message
        self.title = title
        self.silenced_by = None
        self.response = None  # the httpolice Response it was said of, if any


def httpolice_title(complaint):
    try:
        return detypographize(_piece_to_text(complaint.notice.title, complaint.context).strip())
    except Exception:  # a title that will not render still names its notice
        return f"notice {complaint.id}"


def describe_request(req):
    return f"{req.method} {req.target}"


def describe_response(resp):
    return f"{int(resp.status)} {resp.reason or ''}".strip()


def entries(message):
    return [(str(e.name).encode("latin-1", "replace"), e.value) for e in message.header_entries]


def httplint_request(req, start_time):
    linter = httplint.HttpRequestLinter(start_time=start_time)
    linter.process_request_topline(
        str(req.method).encode("latin-1", "replace"),
        req.target.encode("utf-8", "replace"),
        str(req.version).encode("ascii", "replace"),
    )
    linter.process_headers(entries(req))
    if okay(req.body):
        linter.feed_content(req.body)
    linter.finish_content(okay(req.body),
                          [(str(e.name).encode(), e.value) for e in req.trailer_entries])
    return linter


def httplint_response(resp, req_linter, start_time):
    linter = httplint.HttpResponseLinter(start_time=start_time, _related=req_linter)
    linter.process_response_topline(
        str(resp.version).encode("ascii", "replace"),
        str(int(resp.status)).encode(),
        (resp.reason or "").encode("latin-1", "replace"),
    )
    linter.is_head_response = req_linter is not None and req_linter.method == "HEAD"
    linter.process_headers(entries(resp))
    if okay(resp.body):
        linter.feed_content(resp.body)
    linter.finish_content(okay(resp.body),
                          [(str(e.name).encode(), e.value) for e in resp.trailer_entries])
    return linter


def httplint_notes(linter):
    stack = list(linter.notes)
    while stack:
        note = stack.pop()
        yield note
        stack.extend(note.subnotes)


HTTPLINT_SEVERITY = {"bad": "error", "warning": "comment"}


def lint_file(path, meta):
    """Returns (exchange count, findings, cut) for one capture file.

    `cut` counts responses left out because their reader went away before their end: the
    connection's last response is incomplete, and either the client never saw candor end the
    connection (client side: the test stopped reading first) or it came from a harness upstream
    (upstream side: hyper frames those correctly, so only candor leaving, or the test ending,
    cuts one short). What was captured of them is not a framing error of their sender.
    """
    test = meta.get("test", "unknown")
    side = meta.get("side", "client")
    req_party, resp_party = (("test-client", "candor") if side == "client"
                             else ("candor", "test-upstream"))
    start_time = os.path.getmtime(path)
    findings, exchanges = [], 0
    reader_left = side == "upstream" or meta.get("server-ended") == "no"
    last_response = []

    def add(tool, ident, severity, party, message, title, resp=None):
        finding = Finding(tool, ident, severity, party, test, path, message, title)
        finding.response = resp
        findings.append(finding)

    # A side that sent nothing (an upstream that never answered, a client that never asked) is
    # left out, as HTTPolice's own req-stream input does, rather than parsed as a bad heading.
    inbound, outbound, scheme, _ = parse_combined(path)
    for exch in parse_streams(inbound if inbound.peek() else None,
                              outbound if outbound.peek() else None, scheme):
        check_exchange(exch)
        req = exch.request
        if req is not None or exch.responses:
            exchanges += 1
        for c in exch.complaints:
            party = req_party if c.id in REQUEST_STREAM_BOXES else resp_party
            add("httpolice", c.id, c.severity.name, party, "stream", httpolice_title(c))
        if req is not None:
            for c in req.complaints:
                add("httpolice", c.id, c.severity.name, req_party, describe_request(req),
                    httpolice_title(c))
        req_linter = httplint_request(req, start_time) if req is not None else None
        if req_linter is not None:
            for note in httplint_notes(req_linter):
                severity = HTTPLINT_SEVERITY.get(note.level.value)
                if severity:
                    add("httplint", type(note).__name__, severity, req_party,
                        describe_request(req), str(note.summary))
        for resp in exch.responses:
            last_response[:] = [resp]
            for c in resp.complaints:
                add("httpolice", c.id, c.severity.name, resp_party, describe_response(resp),
                    httpolice_title(c), resp)
            for note in httplint_notes(httplint_response(resp, req_linter, start_time)):
                severity = HTTPLINT_SEVERITY.get(note.level.value)
                if severity:
                    add("httplint", type(note).__name__, severity, resp_party,
                        describe_response(resp), str(note.summary), resp)
    cut = 0
    if reader_left and last_response:
        last = last_response[0]
        if any(f.response is last and f.ident in INCOMPLETE for f in findings):
            cut = 1
            # Everything said of a message known only in part goes with it.
            findings = [f for f in findings if f.response is not last]
    return exchanges, findings, cut


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("captures", help="directory of *.http capture files")
    ap.add_argument("--silence", required=True, help="the reviewed silence list")
    ap.add_argument("--failing", help="write the paths of files with unsilenced errors here")
    args = ap.parse_args()

    silence, problems = load_silence(args.silence)
    if problems:
        print("\n".join(problems), file=sys.stderr)
        return 2
    paths = sorted(os.path.join(args.captures, name) for name in os.listdir(args.captures)
                   if name.endswith(".http"))
    if not paths:
        print(f"no captures in {args.captures}", file=sys.stderr)
        return 2

    findings, skipped, exchanges, tests, cut = [], [], 0, set(), 0
    sides = collections.Counter()
    for path in paths:
        meta = read_preamble(path)
        if meta.get("truncated") == "yes":
            skipped.append(path)
            continue
        count, found, cut_here = lint_file(path, meta)
        exchanges += count
        cut += cut_here
        sides[meta.get("side", "client")] += count
        tests.add(meta.get("test", "unknown"))
        findings.extend(found)

    for finding in findings:
        for entry in silence:
            if entry.covers(finding.notice, finding.party, finding.test):
                finding.silenced_by = entry
                entry.used += 1
                break

    print(f"HTTPolice {httpolice.__version__}, httplint {httplint.__version__}")
    print(f"linted {exchanges} exchanges ({sides['client']} client↔candor, "
          f"{sides['upstream']} candor↔upstream) on {len(paths) - len(skipped)} connections "
          f"from {len(tests)} tests")
    for path in skipped:
        print(f"  not linted (capture over its size cap): {os.path.basename(path)}")
    if cut:
        print(f"  {cut} response(s) not linted: their reader left before their end")

    table = collections.Counter((f.severity, f.notice, f.party, f.silenced_by is not None)
                                for f in findings)
    titles = {}
    for f in findings:
        titles.setdefault(f.notice, re.sub(r"\s+", " ", f.title)[:70])
    order = {"error": 0, "comment": 1, "debug": 2}
    print("\nnotices (severity, notice, party: count before silencing / after):")
    keys = sorted({(s, n, p) for (s, n, p, _) in table},
                  key=lambda k: (order.get(k[0], 9), k[1], k[2]))
    for (severity, notice, party) in keys:
        total = table[(severity, notice, party, False)] + table[(severity, notice, party, True)]
        left = table[(severity, notice, party, False)]
        print(f"  {severity:<8} {notice:<34} {party:<14} {total:>5} / {left:<5} "
              f"{titles[notice]}")

    by_severity = collections.Counter(f.severity for f in findings)
    left = collections.Counter(f.severity for f in findings if f.silenced_by is None)
    print("\ntotals before silencing: " + ", ".join(
        f"{by_severity[s]} {s}" for s in ("error", "comment", "debug")))
    print("totals after silencing:  " + ", ".join(
        f"{left[s]} {s}" for s in ("error", "comment", "debug")))

    for entry in silence:
        if not entry.used:
            print(f"warning: silence entry at line {entry.line_no} matched nothing "
                  f"({entry.notice} {entry.party} {entry.tests}): remove it if it is stale")

    errors = [f for f in findings if f.severity == "error" and f.silenced_by is None]
    if errors:
        print(f"\n{len(errors)} error(s) not on the silence list, by notice, party and test:")
        groups = collections.defaultdict(list)
        for f in errors:
            groups[(f.notice, f.party, f.test)].append(f)
        for (notice, party, test), group in sorted(groups.items()):
            f = group[0]
            print(f"  {notice} [{party}] {test}: {len(group)}x, e.g. {f.message}: {f.title}\n"
                  f"      in {f.path}")
        if args.failing:
            with open(args.failing, "w", encoding="utf-8") as out:
                out.write("\n".join(sorted({f.path for f in errors})) + "\n")
        return 1
    print("\nprotocol lint: no errors")
    return 0


if __name__ == "__main__":
    sys.exit(main())
