"""Fuzz every operation of the API's own OpenAPI document with schemathesis.

    python -m loadtests.fuzz --cases 10000 --output DIR [--seed 0]

Without TESSERA_URL (and TESSERA_API_KEY) it starts a local Tessera on a fresh Ray first (tiny
FLUX, a small per-tenant queue so accepted fuzz tasks stay few). Cases are spread evenly over
every operation, half drawn from the schema (valid data: what a client generated from it would
send) and half from its negation (invalid data), with a fixed seed. Among valid generation and
edit bodies, every other one names a real model, so the per-model rules are reached too.

The report (DIR/fuzz.json and DIR/fuzz.md) lists every response >= 500 with a curl command that
reproduces it, every 4xx whose body is not the one error shape, every request that did not
answer within --request-timeout, and per operation how much valid data was accepted.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import os
import time
from dataclasses import dataclass, field
from typing import Any

import httpx

from loadtests.common import import_tiny, out_dir, require_loopback, write_report

ERROR_KEYS = {"code", "message", "param"}


def error_shape_problem(response) -> str | None:
    """Why a 4xx/5xx body is not `{"error": {"code", "message", "param"}}`, or None."""
    try:
        body = response.json()
    except ValueError:
        return f"not JSON: {response.text[:120]!r}"
    if not isinstance(body, dict) or set(body) != {"error"}:
        return f"top-level keys {sorted(body) if isinstance(body, dict) else type(body)}"
    err = body["error"]
    if not isinstance(err, dict) or set(err) != ERROR_KEYS:
        return f"error keys {sorted(err) if isinstance(err, dict) else type(err)}"
    if not (isinstance(err["code"], str) and isinstance(err["message"], str)
            and (err["param"] is None or isinstance(err["param"], str))):
        return "error fields of the wrong type"
    return None


@dataclass
class Finding:
    operation: str
    mode: str
    status: int | None
    detail: str
    curl: str


@dataclass
class Tally:
    cases: int = 0
    statuses: collections.Counter = field(default_factory=collections.Counter)
    server_errors: list[Finding] = field(default_factory=list)
    bad_shapes: list[Finding] = field(default_factory=list)
    hangs: list[Finding] = field(default_factory=list)
    # operation -> mode -> Counter of status classes
    per_operation: dict[str, dict[str, collections.Counter]] = field(default_factory=dict)
    rejections: dict[str, collections.Counter] = field(default_factory=dict)
    slowest_ms: float = 0.0


def _bind(record, op, mode):
    """A test function for @given (which refuses defaults): records each drawn case."""
    def one(case):
        record(op, mode, case)
    return one


def run_fuzz(base_url: str, api_key: str, cases: int, seed: int = 0,
             request_timeout: float = 30.0, model: str | None = None,
             log=print) -> dict[str, Any]:
    """Fuzz `base_url` with about `cases` requests; returns the report as a dict."""
    import hypothesis
    import schemathesis
    from hypothesis import HealthCheck, Phase, given, settings

    spec = httpx.get(f"{base_url}/openapi.json", timeout=30).json()
    schema = schemathesis.openapi.from_dict(spec)
    operations = [result.ok() for result in schema.get_all_operations()]
    headers = {"Authorization": f"Bearer {api_key}"}
    tally = Tally()
    modes = [schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE]
    quota = max(1, cases // (len(operations) * len(modes)))
    session = __import__("requests").Session()
    started = time.time()

    def record(op, mode, case) -> None:
        label = f"{op.method.upper()} {op.path}"
        if (model and mode.value == "positive" and isinstance(case.body, dict)
                and "model" in case.body and tally.cases % 2 == 0):
            case.body["model"] = model
        curl = case.as_curl_command(headers=headers, base_url=base_url)
        tally.cases += 1
        t0 = time.perf_counter()
        try:
            response = case.call(base_url=base_url, headers=headers, session=session,
                                 timeout=request_timeout)
        except Exception as exc:  # a timeout or a dropped connection: the API did not answer
            tally.hangs.append(Finding(label, mode.value, None,
                                       f"{type(exc).__name__}: {str(exc)[:200]}", curl))
            tally.statuses["no answer"] += 1
            return
        tally.slowest_ms = max(tally.slowest_ms, (time.perf_counter() - t0) * 1000)
        status = response.status_code
        tally.statuses[status] += 1
        per_mode = tally.per_operation.setdefault(label, {})
        per_mode.setdefault(mode.value, collections.Counter())[f"{status // 100}xx"] += 1
        if status >= 500:
            tally.server_errors.append(Finding(label, mode.value, status,
                                               response.text[:300], curl))
        if status >= 400:
            problem = error_shape_problem(response)
            if problem:
                tally.bad_shapes.append(Finding(label, mode.value, status, problem, curl))
            elif mode.value == "positive":
                code = response.json()["error"]["code"]
                tally.rejections.setdefault(label, collections.Counter())[code] += 1

    for round_no in range(1000):  # ops with a small input space run out early: go round again
        before = tally.cases
        for op in operations:
            for mode in modes:
                if tally.cases >= cases:
                    break
                one = hypothesis.seed(seed + round_no)(settings(
                    max_examples=min(quota, cases - tally.cases), deadline=None, database=None,
                    phases=[Phase.generate], suppress_health_check=list(HealthCheck))(
                    given(case=op.as_strategy(generation_mode=mode))(
                        _bind(record, op, mode))))
                try:
                    one()
                except Exception as exc:  # a strategy the generator cannot satisfy
                    log(f"  {op.method.upper()} {op.path} ({mode.value}): generation stopped: "
                        f"{type(exc).__name__}: {str(exc)[:160]}")
        log(f"round {round_no}: {tally.cases} cases, {len(tally.server_errors)} 5xx, "
            f"{time.time() - started:.0f}s")
        if tally.cases >= cases or tally.cases == before:
            break

    positive = {op: dict(m.get("positive", {})) for op, m in tally.per_operation.items()}
    return {
        "base_url": base_url, "seed": seed, "cases": tally.cases, "operations": len(operations),
        "seconds": round(time.time() - started, 1),
        "statuses": {str(k): v for k, v in sorted(tally.statuses.items(), key=str)},
        "server_errors": [f.__dict__ for f in tally.server_errors],
        "bad_error_shapes": [f.__dict__ for f in tally.bad_shapes],
        "no_answer": [f.__dict__ for f in tally.hangs],
        "slowest_ms": round(tally.slowest_ms, 1),
        "positive_by_operation": positive,
        "positive_rejections": {op: dict(c.most_common(5)) for op, c in tally.rejections.items()},
    }


def markdown(report: dict) -> str:
    lines = [f"# Fuzz: {report['cases']} cases over {report['operations']} operations "
             f"(seed {report['seed']}, {report['seconds']} s)", "",
             f"- responses >= 500: **{len(report['server_errors'])}**",
             f"- 4xx/5xx not in the error shape: **{len(report['bad_error_shapes'])}**",
             f"- requests with no answer: **{len(report['no_answer'])}**",
             f"- slowest answer: {report['slowest_ms']} ms",
             f"- statuses: {report['statuses']}", "",
             "| operation | valid data: 2xx | 4xx | 5xx | top rejection codes |",
             "| --- | --- | --- | --- | --- |"]
    for op, counts in sorted(report["positive_by_operation"].items()):
        top = ", ".join(f"{c} ({n})" for c, n in report["positive_rejections"].get(op, {}).items())
        lines.append(f"| `{op}` | {counts.get('2xx', 0)} | {counts.get('4xx', 0)} | "
                     f"{counts.get('5xx', 0)} | {top} |")
    for title, key in (("Responses >= 500", "server_errors"),
                       ("Error bodies out of shape", "bad_error_shapes"),
                       ("No answer", "no_answer")):
        if report[key]:
            lines += ["", f"## {title}", ""]
            for f in report[key][:50]:
                lines += [f"- `{f['operation']}` ({f['mode']}) → {f['status']}: {f['detail']}",
                          f"  `{f['curl']}`"]
    return "\n".join(lines) + "\n"


async def _import_model(url: str, key: str) -> str:
    async with httpx.AsyncClient(base_url=url, timeout=120) as client:
        return await import_tiny(client, key)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", type=int, default=10000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", default=out_dir("fuzz"))
    parser.add_argument("--request-timeout", type=float, default=30.0)
    args = parser.parse_args()
    url, stop = os.environ.get("TESSERA_URL"), None
    if url:
        keys = [os.environ["TESSERA_API_KEY"]]
    else:
        # A small queue per tenant: fuzzed tasks that are accepted stay few (the rest get 429).
        from loadtests.common import start_local_server

        url, keys, stop = start_local_server(limits={"max_queued_per_tenant": 4,
                                                     "task_deadline_s": 60})
    require_loopback(url)
    try:
        model = asyncio.run(_import_model(url, keys[0]))
        report = run_fuzz(url, keys[0], args.cases, args.seed, args.request_timeout, model)
    finally:
        if stop:
            stop()
    write_report(args.output, "fuzz", report, markdown(report))
    bad = (report["server_errors"] or report["bad_error_shapes"] or report["no_answer"]
           or report["cases"] == 0)
    raise SystemExit(1 if bad else 0)


if __name__ == "__main__":
    main()
