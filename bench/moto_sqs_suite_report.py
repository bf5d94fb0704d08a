#!/usr/bin/env python3
"""Summarise moto's tests/test_sqs run in server mode against several targets.

Reads the junit XML files written by bench/moto_sqs_suite.sh and prints:
  - pass counts per target (executed = collected - skipped),
  - the same for the SQS-API-only files (test_sqs.py, test_sqs_message_attributes.py),
  - every test failing against crunchbox with a one-line reason, the line of the
    test that failed, whether moto marks it `aws_verified` (checked against real
    AWS: a failure there is a real incompatibility, not a moto quirk), whether it
    also fails against moto_server, and whether it passes once reset is emulated,
  - the failures grouped by a normalised reason.

Usage: moto_sqs_suite_report.py --tests-root DIR TARGET=XML [TARGET=XML ...]
The target named `crunchbox` is the one whose failures are listed; a target named
`crunchbox-reset` (same server, every queue deleted where moto resets) is used to
tell which failures come only from the missing /moto-api/reset.
"""

import argparse
import ast
import os
import re
import sys
import xml.etree.ElementTree as ET
from collections import OrderedDict, defaultdict

SQS_API_FILES = ("test_sqs.py", "test_sqs_message_attributes.py")


def load(xml_path):
    """{test_id: (outcome, message, text)}; test_id = 'file.py::[Class::]name[param]'."""
    results = OrderedDict()
    root = ET.parse(xml_path).getroot()
    for tc in root.iter("testcase"):
        cls = tc.get("classname", "")
        parts = cls.split(".")
        # tests.test_sqs.test_sqs[.Class]
        if len(parts) >= 3 and parts[2].startswith("test_"):
            fname = parts[2] + ".py"
            rest = parts[3:]
        else:
            fname, rest = cls, []
        tid = "::".join([fname] + rest + [tc.get("name", "")])
        outcome, msg, text = "passed", "", ""
        for ch in tc:
            if ch.tag in ("failure", "error"):
                outcome = "failed" if ch.tag == "failure" else "error"
                msg, text = ch.get("message", "") or "", ch.text or ""
            elif ch.tag == "skipped":
                outcome = "skipped"
                msg = ch.get("message", "") or ""
        results[tid] = (outcome, msg, text)
    return results


def aws_verified_tests(tests_root):
    """Set of 'file.py::func' carrying @pytest.mark.aws_verified."""
    found = set()
    d = os.path.join(tests_root, "tests", "test_sqs")
    for fn in sorted(os.listdir(d)):
        if not fn.endswith(".py"):
            continue
        try:
            tree = ast.parse(open(os.path.join(d, fn), encoding="utf-8").read())
        except SyntaxError:
            continue
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                for dec in node.decorator_list:
                    if "mark.aws_verified" in ast.unparse(dec):
                        found.add(f"{fn}::{node.name}")
    return found


def base_key(tid):
    fname, *rest = tid.split("::")
    name = re.sub(r"\[.*$", "", rest[-1])
    return f"{fname}::{name}"


LOC_RE = re.compile(r"^(tests/test_sqs/[\w/]+\.py):(\d+):")


def reason(msg, text):
    """(one-line reason, 'file:line: failing statement')."""
    first = (msg.strip().splitlines() or [""])[0]
    # Prefer the explicit E lines when the message is a bare assert repr.
    e_lines = [l[1:].strip() for l in text.splitlines() if l.startswith("E ")]
    diff = [l for l in e_lines if l.startswith(("- ", "+ "))]
    if diff and len(diff) <= 4:
        first = f"{first}  [{' | '.join(diff)}]"
    if "invalid XML received" in first or "Unable to parse response" in first:
        body = [l for l in e_lines if l.startswith("b'") or l.startswith('b"')]
        if body:
            first = f"{first.split('Further')[0].strip()} body={body[-1][:120]}"
    where = ""
    last_src = ""
    for line in text.splitlines():
        if line.startswith(">"):
            last_src = line[1:].strip()
        m = LOC_RE.match(line)
        if m:
            where = f"{os.path.basename(m.group(1))}:{m.group(2)}: {last_src}"
    return first[:400], where[:200]


HEX_RE = re.compile(r"\b[0-9a-f]{6,}\b|\b[A-Za-z0-9_\-]{30,}\b")


def group_key(msg, where):
    first = (msg.strip().splitlines() or [""])[0]
    m = re.search(r"An error occurred \((\w[\w.]*)\) when calling the (\w+) operation: (.*)", first)
    if m:
        code, op, text = m.groups()
        text = HEX_RE.sub("…", text)
        return f"{op} answered {code}: {text}"
    if "invalid XML received" in first:
        return "non-XML answer (request for a service crunchbox does not serve)"
    if first.startswith("Failed: DID NOT RAISE"):
        return f"expected an error, got success: {where.split(': ', 1)[-1] if where else ''}"
    return f"assertion: {HEX_RE.sub('…', first)[:160]}"


def counts(res, only_files=None):
    c = defaultdict(int)
    for tid, (outcome, _, _) in res.items():
        if only_files and tid.split("::")[0] not in only_files:
            continue
        c[outcome] += 1
        c["total"] += 1
    c["executed"] = c["total"] - c["skipped"]
    return c


def fmt(name, c):
    ex = c["executed"]
    pct = f" ({100.0 * c['passed'] / ex:.0f} %)" if ex else ""
    return f"{name}: {c['passed']}/{ex} passed{pct}"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--tests-root", required=True)
    ap.add_argument("targets", nargs="+", help="NAME=junit.xml")
    a = ap.parse_args()
    runs = OrderedDict()
    for t in a.targets:
        name, path = t.split("=", 1)
        if os.path.exists(path):
            runs[name] = load(path)
        else:
            print(f"(no results for {name}: {path} missing)")
    if not runs:
        return 1
    verified = aws_verified_tests(a.tests_root)

    print("=" * 78)
    print("; ".join(fmt(n, counts(r)) for n, r in runs.items()))
    for n, r in runs.items():
        c = counts(r)
        print(
            f"  {n:16} collected {c['total']}, skipped {c['skipped']} (server mode / docker), "
            f"executed {c['executed']}: passed {c['passed']}, failed {c['failed']}, errors {c['error']}"
        )
    print(
        "SQS API only (test_sqs.py + test_sqs_message_attributes.py): "
        + "; ".join(fmt(n, counts(r, SQS_API_FILES)) for n, r in runs.items())
    )

    moto = runs.get("moto", {})
    for n, r in runs.items():
        bad = [t for t, (o, _, _) in r.items() if o in ("failed", "error")]
        if n.startswith("crunchbox") or not bad:
            continue
        print(f"\nFailing against {n} ({len(bad)}):")
        for t in bad:
            print(f"  {t}: {reason(r[t][1], r[t][2])[0][:200]}")

    cb = runs.get("crunchbox")
    if cb is None:
        return 0
    reset = runs.get("crunchbox-reset", {})
    bad = [t for t, (o, _, _) in cb.items() if o in ("failed", "error")]
    print(f"\nFailing against crunchbox ({len(bad)}):")
    print("  flags: V = @pytest.mark.aws_verified (moto checked it against real AWS),")
    print("         M = also fails against moto_server, R = passes once reset is emulated")
    groups = OrderedDict()
    for t in bad:
        outcome, msg, text = cb[t]
        why, where = reason(msg, text)
        flags = "".join(
            [
                "V" if base_key(t) in verified else "-",
                "M" if moto.get(t, ("passed",))[0] in ("failed", "error") else "-",
                "R" if reset.get(t, ("x",))[0] == "passed" else "-",
            ]
        )
        print(f"  [{flags}] {t}")
        print(f"        {why}")
        if where:
            print(f"        at {where}")
        groups.setdefault(group_key(msg, where), []).append((flags, t))
    if reset:
        fixed = [t for t in bad if reset.get(t, ("",))[0] == "passed"]
        rb = [t for t, (o, _, _) in reset.items() if o in ("failed", "error") and cb.get(t, ("",))[0] == "passed"]
        print(
            f"\nReset emulation (crunchbox-reset run): {len(fixed)} of these pass once every queue is"
            f" deleted where moto resets; {len(rb)} pass only without it."
        )
        for t in rb:
            print(f"  fails only with reset emulation: {t}: {reason(reset[t][1], reset[t][2])[0][:200]}")

    print(f"\nCrunchbox failures grouped by reason ({len(groups)} groups):")
    for k, items in sorted(groups.items(), key=lambda kv: -len(kv[1])):
        print(f"  ({len(items)}) {k[:220]}")
        for flags, t in items:
            print(f"        [{flags}] {t}")
    print("=" * 78)
    return 0


if __name__ == "__main__":
    sys.exit(main())
