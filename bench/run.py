#!/usr/bin/env python3
"""digestd at scale: day 1 (baseline) and day 2 for 100 / 10,000 / 100,000 subscribers.

    make bench                                   # = .venv/bin/python bench/run.py
    .venv/bin/python bench/run.py --scales 100,10000 --json results.json

What it does, all on 127.0.0.1:
* a fake arXiv (tests/fakearxiv.py, no delay) serves 50 keywords x 100 papers; a second one
  serves day 2, where each keyword has a few new papers on top (default 5-8, so a subscriber
  with 1-5 keywords gets a digest of 5-40 papers);
* Postfix's `smtp-sink` receives the mail (the script installs Debian's `postfix` package if
  `smtp-sink` is missing, without configuring or starting Postfix itself);
* per scale, a fresh child process builds an instance (seeded random subscribers with 1-5
  keywords each), runs day 1 and day 2 in process with the real SMTP transport, and reports
  the time of each stage, peak RSS (ru_maxrss of that child only) and the state file sizes;
* the limit: `smtp-source` sends the same number of messages of the same average size to the
  same sink over the same number of reused connections (-s N -d);
* the naive baseline: stdlib smtplib, one connection, one EmailMessage per digest
  (set_content + add_alternative + send_message), on the first --naive-count digests of day 2
  (their text and HTML prepared beforehand, so only the mail part is timed), extrapolated.

Profiling: `--profile PREFIX` runs day 2 under cProfile (PREFIX.nN.prof); with py-spy on PATH,
BENCH_PYSPY=PREFIX samples day 2 into PREFIX.nN.txt (collapsed stacks). Results and how to read
them: docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))

DAY1, DAY2 = "2026-11-20", "2026-11-21"
SENDER = "Daily Papers <papers@example.org>"
PER_KEYWORD = 100
TOPICS = [
    "Video Anomaly Detection", "Vision Language Model", "Video Understanding", "Diffusion Model",
    "Large Language Model", "Reinforcement Learning", "Graph Neural Network", "Federated Learning",
    "Neural Radiance Field", "Gaussian Splatting", "Object Detection", "Semantic Segmentation",
    "Point Cloud", "Speech Recognition", "Machine Translation", "Retrieval Augmented Generation",
    "Contrastive Learning", "Self Supervised Learning", "Knowledge Distillation", "Model Compression",
    "Continual Learning", "Domain Adaptation", "Few Shot Learning", "Meta Learning",
    "Adversarial Robustness", "Explainable AI", "Causal Inference", "Time Series Forecasting",
    "Anomaly Detection", "Recommender System", "Autonomous Driving", "Robot Manipulation",
    "Medical Image Segmentation", "Protein Structure", "Drug Discovery", "Quantum Machine Learning",
    "Mixture of Experts", "State Space Model", "Vision Transformer", "Image Super Resolution",
    "Text to Image", "Video Generation", "Pose Estimation", "Optical Flow", "Depth Estimation",
    "Scene Graph", "Visual Question Answering", "Code Generation", "Mathematical Reasoning",
    "Embodied Agent",
]  # fmt: skip
STAGES = ("load", "fetch", "diff", "queue", "render", "deliver", "readme", "total")
_TEXT = (
    "we propose a novel framework that jointly models temporal context and spatial structure "
    "experiments on standard benchmarks show consistent gains over strong baselines while "
    "reducing the computational cost our analysis reveals that the learned representations "
    "transfer across domains and remain robust under distribution shift code and models are "
    "publicly available to foster further research in this direction"
)
WORDS = _TEXT.split()


# --------------------------------------------------------------------------- instance data


def feeds(new_lo: int, new_hi: int) -> tuple[dict[str, list[Any]], dict[str, list[Any]], dict[str, int]]:
    """Day 1 and day 2 feeds: distinct ids, realistic title/abstract lengths, newest first."""
    from fixtures import make_paper

    rng = random.Random(6)

    def papers(kw: str, n: int, first: int, day: str) -> list[Any]:
        out = []
        for k in range(n):
            i = first + k
            r = random.Random(i)
            words = [r.choice(WORDS) for _ in range(r.randint(140, 220))]
            summary = f"{kw} is studied here. " + " ".join(words).capitalize() + "."
            title = f"{kw}: " + " ".join(r.choice(WORDS).capitalize() for _ in range(r.randint(6, 12)))
            minute = 23 * 60 + 59 - k
            out.append(make_paper(
                i, kw, f"{day}T{minute // 60:02d}:{minute % 60:02d}:00Z", title=title, summary=summary,
                comment=f"{k % 30 + 4} pages, {k % 9 + 1} figures" if k % 3 else None,
                categories=["cs.CV", "cs.LG"] if k % 2 else ["cs.CL"],
            ))
        return out

    day1: dict[str, list[Any]] = {}
    day2: dict[str, list[Any]] = {}
    new: dict[str, int] = {}
    for j, kw in enumerate(TOPICS):
        day1[kw] = papers(kw, PER_KEYWORD, j * 1000, DAY1)
        new[kw] = rng.randint(new_lo, new_hi)
        day2[kw] = papers(kw, new[kw], j * 1000 + 500, DAY2) + day1[kw][: PER_KEYWORD - new[kw]]
    return day1, day2, new


def write_instance(home: Path, n: int, connections: int) -> None:
    rng = random.Random(n)
    home.mkdir(parents=True)
    (home / "state").mkdir()
    lines = ["# digestd benchmark instance", "keywords:"]
    lines += [f"  - {kw}" for kw in TOPICS]
    lines.append("subscribers:")
    for i in range(n):
        lines.append(f"  - email: reader{i:06d}@example.org")
        if i % 2:
            lines.append(f"    name: Reader {i}")
        kws = rng.sample(TOPICS, rng.randint(1, 5))
        lines.append(f"    keywords: [{', '.join(kws)}]")
    lines += [
        "settings:",
        f"  from: {SENDER}",
        "  timezone: UTC",
        f"  connections: {connections}",
        "",
    ]
    (home / "subscribers.yaml").write_text("\n".join(lines), encoding="utf-8")


# --------------------------------------------------------------------------- child: one scale


class Timers:
    def __init__(self) -> None:
        self.t: dict[str, float] = defaultdict(float)
        self.count: dict[str, int] = defaultdict(int)
        self.bytes = 0

    def wrap(self, name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        t = self.t
        c = self.count

        def timed(*a: Any, **k: Any) -> Any:
            start = time.perf_counter()
            try:
                return fn(*a, **k)
            finally:
                t[name] += time.perf_counter() - start
                c[name] += 1

        return timed


def child(args: argparse.Namespace) -> dict[str, Any]:
    t0 = time.perf_counter()
    from datetime import datetime

    from digestd import pipeline
    from digestd.config.load import load_config
    from digestd.mail import smtp as deliver
    from digestd.mail.transport import make_transport
    from digestd.render.digest import DigestRenderer
    from digestd.source.arxiv import ArxivSource
    from digestd.stages import collect, publish, queue, send
    from digestd.store.outbox import Outbox

    imports = time.perf_counter() - t0
    home = Path(args.home)
    write_instance(home, args.n, args.connections)
    env = {
        "DIGESTD_SMTP_HOST": "127.0.0.1", "DIGESTD_SMTP_PORT": str(args.sink_port),
        "DIGESTD_SMTP_SECURITY": "none", "DIGESTD_ARXIV_DELAY": "0", "DIGESTD_SMTP_TIMEOUT": "60",
    }
    tm = Timers()
    ArxivSource.fetch = tm.wrap("fetch", ArxivSource.fetch)  # type: ignore[method-assign]
    collect.collect = tm.wrap("fetch_diff", collect.collect)
    queue.queue = tm.wrap("queue", queue.queue)
    send.send = tm.wrap("send", send.send)
    publish.publish = tm.wrap("readme", publish.publish)
    # render = grouping, rendering and building the bytes; every message's size as it goes out
    send.group_for_subscriber = tm.wrap("render", send.group_for_subscriber)
    DigestRenderer.render = tm.wrap("render", DigestRenderer.render)  # type: ignore[method-assign]
    send.build_message = tm.wrap("render", send.build_message)
    Outbox.append = tm.wrap("ledger", Outbox.append)  # type: ignore[method-assign]
    real_sendmail = deliver.sendmail

    async def sendmail(client: Any, env_: Any, **kw: Any) -> None:
        tm.bytes += len(env_.data)
        await real_sendmail(client, env_, **kw)

    deliver.sendmail = sendmail

    days: dict[str, Any] = {}
    for day, url in ((DAY1, args.url1), (DAY2, args.url2)):
        tm.t.clear()
        tm.count.clear()
        tm.bytes = 0
        start = time.perf_counter()
        cfg = load_config(home, env)
        loaded = time.perf_counter()
        source = ArxivSource(url, delay=0.0, timeout=60, retries=1)
        transport = make_transport(cfg.smtp, cfg.paths.maildir, connections=cfg.settings.connections,
                                   max_rate=cfg.settings.max_rate)
        now = datetime.fromisoformat(f"{day}T12:00:00+00:00")
        spy = None
        if os.environ.get("BENCH_PYSPY") and day == DAY2:  # sampling profile: py-spy on PATH
            out = f"{os.environ['BENCH_PYSPY']}.n{args.n}.txt"
            spy = subprocess.Popen(
                ["py-spy", "record", "--pid", str(os.getpid()), "--rate", "250", "--format", "raw",
                 "-o", out],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )
            time.sleep(1.0)
        self0 = resource.getrusage(resource.RUSAGE_SELF)
        if args.profile and day == DAY2:
            import cProfile

            prof = cProfile.Profile()
            report = prof.runcall(pipeline.run, cfg, source=source, transport=transport, now=now)
            prof.dump_stats(f"{args.profile}.n{args.n}.prof")
        else:
            report = pipeline.run(cfg, source=source, transport=transport, now=now)
        end = time.perf_counter()
        self1 = resource.getrusage(resource.RUSAGE_SELF)
        if spy is not None:
            spy.send_signal(signal.SIGINT)
            spy.wait(60)
        t = dict(tm.t)
        render = t.get("render", 0.0)
        send = t.get("send", 0.0)
        days[day] = {
            "load": loaded - start,
            "fetch": t.get("fetch", 0.0),
            "diff": t.get("fetch_diff", 0.0) - t.get("fetch", 0.0),
            "queue": t.get("queue", 0.0),
            "render": render,
            "main_cpu": self1.ru_utime + self1.ru_stime - self0.ru_utime - self0.ru_stime,
            "deliver": send - render,
            "send": send,
            "ledger_flushes": tm.count.get("ledger", 0),
            "ledger": t.get("ledger", 0.0),
            "readme": t.get("readme", 0.0),
            "total": end - start,
            "run": end - loaded,
            "sent": report.sent,
            "pending": report.pending,
            "failed": report.failed,
            "bytes": tm.bytes,
            "new": sum(len(k.new) for k in report.keywords),
            "errors": [k.error for k in report.keywords if k.error] + [e for e in [report.fatal] if e],
        }
    state = home / "state"
    return {
        "n": args.n,
        "imports": imports,
        "days": days,
        "maxrss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "state_bytes": {p.name: p.stat().st_size for p in sorted(state.glob("*.json"))},
    }


def naive(args: argparse.Namespace) -> dict[str, Any]:
    """stdlib smtplib, one connection, one EmailMessage per digest, send_message."""
    import smtplib
    from datetime import UTC, datetime
    from email.message import EmailMessage
    from email.utils import format_datetime, formataddr, make_msgid

    from digestd.config.load import load_config
    from digestd.render.digest import DigestRenderer, count_papers, group_for_subscriber, plural
    from digestd.store.outbox import Outbox
    from digestd.store.papers import PaperStore

    cfg = load_config(Path(args.home), {})
    store = PaperStore(cfg.paths.papers_db)
    outbox = Outbox(cfg.paths.outbox_db)
    by_kw = {kw: {p.id: p for _, p in items} for kw, items in store.by_keyword().items()}
    order = [k.name for k in cfg.keywords]
    docs = [d for d in outbox.all_deliveries() if d.date == DAY2][: args.count]
    r = DigestRenderer(cfg.paths.templates, date=DAY2, list_name="Daily Papers", sender=cfg.sender)
    prepared = []
    for d in docs:
        additions = {kw: [by_kw[kw][i] for i in ids] for kw, ids in d.papers.items()}
        sections = group_for_subscriber(order, additions)
        text, html = r.render(d.email, sections)
        prepared.append((d, text, html, count_papers(sections)))
    start = time.perf_counter()
    with smtplib.SMTP("127.0.0.1", args.sink_port) as smtp:
        for d, text, html, n in prepared:
            msg = EmailMessage()
            msg["From"] = cfg.sender
            msg["To"] = formataddr((d.name or "", d.email))
            msg["Subject"] = f"Daily Papers {DAY2}: {plural(n, 'new paper')}"
            msg["Date"] = format_datetime(datetime.now(UTC))
            msg["Message-ID"] = make_msgid(domain="example.org")
            msg["List-Id"] = "Daily Papers <daily-papers.example.org>"
            msg["List-Unsubscribe"] = "<mailto:papers@example.org?subject=unsubscribe>"
            msg["Auto-Submitted"] = "auto-generated"
            msg.set_content(text)
            msg.add_alternative(html, subtype="html")
            smtp.send_message(msg)
    took = time.perf_counter() - start
    outbox.close()
    store.close()
    return {"count": len(prepared), "seconds": took, "rate": len(prepared) / took if took else 0.0}


# --------------------------------------------------------------------------- orchestration


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def ensure_postfix() -> None:
    if shutil.which("smtp-sink") or Path("/usr/sbin/smtp-sink").exists():
        return
    print("smtp-sink not found: installing Debian's postfix package (not configured, not started)",
          file=sys.stderr)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    answer = b"postfix postfix/main_mailer_type select No configuration\n"
    subprocess.run(["debconf-set-selections"], input=answer, check=True, env=env)
    subprocess.run(["apt-get", "update", "-q"], check=True, env=env, stdout=subprocess.DEVNULL)
    subprocess.run(["apt-get", "install", "-y", "-q", "--no-install-recommends", "postfix"], check=True,
                   env=env, stdout=subprocess.DEVNULL)


def tool(name: str) -> str:
    return shutil.which(name) or f"/usr/sbin/{name}"


class Sink:
    """smtp-sink on 127.0.0.1:PORT, with its running message counter (-c)."""

    def __init__(self, workdir: Path) -> None:
        self.port = free_port()
        self.log = workdir / "smtp-sink.out"
        cmd = [tool("smtp-sink"), "-c", "-m", "512"]
        if os.geteuid() == 0:
            cmd += ["-u", "nobody"]
        cmd += [f"127.0.0.1:{self.port}", "1024"]
        self.fh = self.log.open("wb")
        self.proc = subprocess.Popen(cmd, stdout=self.fh, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    why = self.log.read_text(errors="replace")
                    raise RuntimeError(f"smtp-sink did not start: {why}") from None
                time.sleep(0.05)

    def messages(self) -> int:
        counts = re.findall(rb"mesg=(\d+)", self.log.read_bytes()[-4096:])
        return int(counts[-1]) if counts else 0

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.fh.close()


def smtp_source(port: int, count: int, size: int, sessions: int) -> dict[str, Any]:
    cmd = [tool("smtp-source"), "-s", str(sessions), "-d", "-m", str(count), "-l", str(size),
           "-f", "papers@example.org", "-t", "reader@example.org", "-S", "Daily Papers benchmark",
           f"127.0.0.1:{port}"]
    start = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    took = time.perf_counter() - start
    return {"count": count, "size": size, "sessions": sessions, "seconds": took, "rate": count / took}


def run_py(argv: list[str], timeout: float) -> dict[str, Any]:
    out = subprocess.run([sys.executable, __file__, *argv], capture_output=True, text=True, timeout=timeout,
                         check=False)
    if out.returncode:
        raise RuntimeError(f"bench child {argv[:3]} failed ({out.returncode}):\n{out.stderr[-4000:]}")
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


@contextmanager
def arxiv_servers(new_lo: int, new_hi: int) -> Iterator[tuple[str, str, dict[str, int]]]:
    from fakearxiv import FakeArxiv

    day1, day2, new = feeds(new_lo, new_hi)
    with FakeArxiv(day1) as a1, FakeArxiv(day2) as a2:
        yield a1.url, a2.url, new


def fmt_rate(x: float) -> str:
    return f"{x:,.0f}"


def report(results: list[dict[str, Any]], args: argparse.Namespace) -> str:
    cols = ["subscribers", "day", "load", "fetch", "diff", "queue", "render", "deliver", "README", "total",
            "CPU", "digests", "digests/s", "KB/msg"]
    rows = []
    for r in results:
        for day, d in r["days"].items():
            rate = d["sent"] / d["send"] if d["send"] and d["sent"] else 0.0
            rows.append([
                f"{r['n']:,}", "1 (baseline)" if day == DAY1 else "2",
                *(f"{d[k]:.2f}" for k in STAGES), f"{d['main_cpu']:.2f}",
                f"{d['sent']:,}", fmt_rate(rate) if rate else "-",
                f"{d['bytes'] / d['sent'] / 1024:.1f}" if d["sent"] else "-",
            ])
    lines = ["| " + " | ".join(cols) + " |", "|" + " --- |" * len(cols)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    lines.append("")
    cols2 = ["subscribers", "digestd digests/s", "smtp-source msg/s", "naive msg/s", "digestd/smtp-source",
             "digestd/naive", "day 2 end to end s", "peak RSS MB", "papers.json KB", "outbox.json KB"]
    lines += ["| " + " | ".join(cols2) + " |", "|" + " --- |" * len(cols2)]
    for r in results:
        d = r["days"][DAY2]
        rate = d["sent"] / d["send"] if d["send"] and d["sent"] else 0.0
        src, nv = r.get("smtp_source"), r.get("naive")
        sb = r["state_bytes"]
        lines.append("| " + " | ".join([
            f"{r['n']:,}", fmt_rate(rate),
            fmt_rate(src["rate"]) if src else "-",
            (fmt_rate(nv["rate"]) + (f" (on {nv['count']:,})" if nv["count"] < d["sent"] else ""))
            if nv else "-",
            f"{rate / src['rate']:.0%}" if src else "-",
            f"{rate / nv['rate']:.1f}x" if nv else "-",
            f"{d['total']:.2f}", f"{r['maxrss_mb']:.0f}",
            f"{sb.get('papers.json', 0) / 1024:,.0f}", f"{sb.get('outbox.json', 0) / 1024:,.0f}",
        ]) + " |")
    lines += ["", *targets(results)]
    return "\n".join(lines)


def targets(results: list[dict[str, Any]]) -> list[str]:
    """Issue 6's targets, checked against this run's figures."""
    out = ["Targets (issue 6):"]

    def check(ok: bool, what: str) -> None:
        out.append(f"  [{'ok' if ok else 'MISSED'}] {what}")

    by_n = {r["n"]: r for r in results}
    for r in results:
        d = r["days"][DAY2]
        if not d["sent"] or r["n"] < 10000:
            continue
        rate = d["sent"] / d["send"]
        src, nv = r.get("smtp_source"), r.get("naive")
        if src:
            check(rate >= 0.3 * src["rate"], f"{r['n']:,}: delivery {rate:,.0f}/s >= 30% of smtp-source's "
                  f"{src['rate']:,.0f}/s ({rate / src['rate']:.0%})")
        if nv:
            check(rate >= 5 * nv["rate"], f"{r['n']:,}: delivery >= 5x naive ({rate / nv['rate']:.1f}x)")
    if 10000 in by_n:
        r = by_n[10000]
        total = r["days"][DAY2]["total"]
        check(total < 15, f"10,000: day 2 end to end {total:.1f} s < 15 s")
        check(r["maxrss_mb"] < 300, f"10,000: peak RSS {r['maxrss_mb']:.0f} MB < 300 MB")
    if 100000 in by_n:
        r = by_n[100000]
        check(r["maxrss_mb"] < 1024, f"100,000: peak RSS {r['maxrss_mb']:.0f} MB < 1 GB")
        if 10000 in by_n:
            a, b = by_n[10000]["days"][DAY2], r["days"][DAY2]
            growth = {k: b[k] / a[k] for k in ("load", "queue", "render", "deliver", "total") if a[k] > 0.05}
            # n log n from 10,000 to 100,000 is x12.5; each stage is one pass over the subscribers
            check(growth["total"] <= 12.5, "100,000 vs 10,000 (10x the subscribers): " + ", ".join(
                f"{k} x{v:.1f}" for k, v in growth.items()) + " (linear: x10, n log n: x12.5)")
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scales", default="100,10000,100000", help="subscriber counts (default: %(default)s)")
    ap.add_argument("--connections", type=int, default=8, help="settings.connections and smtp-source -s")
    ap.add_argument("--new-per-keyword", default="5-8", help="new papers per keyword on day 2, LO-HI")
    ap.add_argument("--naive-count", type=int, default=1000, help="digests sent by the naive baseline")
    ap.add_argument("--json", type=Path, help="also write the raw results here")
    ap.add_argument("--keep", action="store_true", help="keep the temporary instances")
    ap.add_argument("--profile", help="cProfile day 2 of each scale into PREFIX.nN.prof (slows it down)")
    # internal: one child per scale (so RSS and timings never mix) and the naive baseline
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--naive", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--home", help=argparse.SUPPRESS)
    ap.add_argument("--n", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--count", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--sink-port", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--url1", help=argparse.SUPPRESS)
    ap.add_argument("--url2", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(child(args)))
        return 0
    if args.naive:
        print(json.dumps(naive(args)))
        return 0

    scales = [int(s.replace("_", "").replace(",", "")) for s in re.split(r"[, ]+", args.scales) if s]
    lo, _, hi = args.new_per_keyword.partition("-")
    new_lo, new_hi = int(lo), int(hi or lo)
    ensure_postfix()
    tmp = Path(tempfile.mkdtemp(prefix="digestd-bench-"))
    results: list[dict[str, Any]] = []
    sink = Sink(tmp)
    try:
        with arxiv_servers(new_lo, new_hi) as (url1, url2, new):
            print(f"instance: {len(TOPICS)} keywords x {PER_KEYWORD} papers; day 2 adds {sum(new.values())} "
                  f"({new_lo}-{new_hi} per keyword); sink 127.0.0.1:{sink.port}; {os.cpu_count()} CPUs",
                  file=sys.stderr)
            for n in scales:
                home = tmp / f"n{n}"
                before = sink.messages()
                t = time.perf_counter()
                r = run_py(["--child", "--home", str(home), "--n", str(n), "--sink-port", str(sink.port),
                            "--url1", url1, "--url2", url2, "--connections", str(args.connections),
                            *(["--profile", args.profile] if args.profile else [])],
                           timeout=3600)
                time.sleep(0.2)
                r["sink_received"] = sink.messages() - before
                d2 = r["days"][DAY2]
                print(f"{n:>7} subscribers: day 2 {d2['total']:.2f} s, {d2['sent']} digests "
                      f"(sink got {r['sink_received']}), peak RSS {r['maxrss_mb']:.0f} MB "
                      f"[child {time.perf_counter() - t:.0f} s]", file=sys.stderr)
                if d2["sent"]:
                    r["naive"] = run_py(["--naive", "--home", str(home), "--count", str(min(args.naive_count,
                                         d2["sent"])), "--sink-port", str(sink.port)], timeout=1800)
                    avg = d2["bytes"] // d2["sent"]
                    r["smtp_source"] = smtp_source(sink.port, d2["sent"], avg, args.connections)
                results.append(r)
                if not args.keep:
                    shutil.rmtree(home, ignore_errors=True)
    finally:
        sink.stop()
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)
    text = report(results, args)
    print(text)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
