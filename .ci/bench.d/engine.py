"""Measures the run engine on a running portal: how long a log line takes from the runner's
write to an SSE client (a browser's view), and how many no-op jobs per second the orchestrator
and the built-in runner get through (each job includes its git checkout).

Usage: engine.py FLIGHTDECK_BIN DATA_DIR URL SESSION_COOKIE
"""

import http.client
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse

bin_path, data_dir, url, cookie = sys.argv[1:5]
base = urllib.parse.urlparse(url)
NOOPS = 100

pipeline = f"""project: {{ name: Bench, key: bench }}
phases:
  ci:
    title: CI
    stages:
      tick:
        title: Tick
        jobs:
          ticker:
            steps: ['for i in $(seq 1 200); do date +%s%N; sleep 0.02; done']
      noops:
        title: No-ops
        jobs:
""" + "".join(f"          noop{i}:\n            steps: ['true']\n" for i in range(NOOPS))

# The repository is copied into the data directory; the source is not needed afterwards.
with tempfile.TemporaryDirectory(prefix="flightdeck-bench-repo-") as repo:
    with open(os.path.join(repo, "flightdeck.yml"), "w") as f:
        f.write(pipeline)
    subprocess.run(
        [bin_path, "project", "create-repository", "bench", "--from", repo, "--server-url", url, "--data-dir", data_dir],
        check=True, capture_output=True, env={**os.environ, "FLIGHTDECK_LOG": "warn"},
    )


def request(method, path, body=None):
    conn = http.client.HTTPConnection(base.hostname, base.port, timeout=60)
    headers = {"Cookie": cookie, "Content-Type": "application/json"}
    conn.request(method, path, body=json.dumps(body) if body is not None else None, headers=headers)
    response = conn.getresponse()
    data = response.read()
    conn.close()
    return response.status, json.loads(data) if data else None


status, created = request("POST", "/api/v1/projects/bench/runs", {"branch": "main"})
assert status == 201, (status, created)
number = created["number"]

latencies = []


def follow_log():
    # Wait for the ticker to start, then read its live log like the job page does.
    while True:
        _, job = request("GET", f"/api/v1/projects/bench/runs/{number}/jobs/ticker")
        if job["job"]["state"] in ("running", "succeeded", "failed"):
            break
        time.sleep(0.05)
    conn = http.client.HTTPConnection(base.hostname, base.port, timeout=120)
    after = job["log"]["lines"][-1]["no"] if job["log"]["lines"] else 0
    conn.request("GET", f"/api/v1/projects/bench/runs/{number}/jobs/ticker/log/stream?after={after}", headers={"Cookie": cookie})
    response = conn.getresponse()
    event = None
    for raw in response:
        line = raw.decode().rstrip("\n")
        if line.startswith("event: "):
            event = line[7:]
            if event == "end":
                break
        elif line.startswith("data: ") and event == "lines":
            arrived = time.time_ns()
            for entry in json.loads(line[6:]):
                text = entry["text"].strip()
                if text.isdigit():
                    latencies.append((arrived - int(text)) / 1e6)


reader = threading.Thread(target=follow_log)
reader.start()
reader.join(timeout=120)

deadline = time.time() + 600
while True:
    _, run = request("GET", f"/api/v1/projects/bench/runs/{number}")
    if run["summary"]["state"] in ("succeeded", "failed", "canceled"):
        break
    assert time.time() < deadline, "the bench run did not finish"
    time.sleep(0.5)

noops = [j for s in run["stages"] if s["name"] == "noops" for j in s["jobs"]]
assert all(j["state"] == "succeeded" for j in noops), run["summary"]["state"]


def parse(ts):
    from datetime import datetime
    return datetime.fromisoformat(ts.replace("Z", "+00:00")).timestamp()


first = min(parse(j["started_at"]) for j in noops)
last = max(parse(j["finished_at"]) for j in noops)
latencies.sort()
print("| measure | value |")
print("|---|---|")
if latencies:
    p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))]
    print(f"| log line, runner write to SSE client (p50 / p99, {len(latencies)} lines) | {statistics.median(latencies):.0f} ms / {p99:.0f} ms |")
print(f"| no-op jobs dispatched and run by the built-in runner ({NOOPS} jobs, one at a time, checkout included) | {NOOPS / (last - first):.1f} jobs/s |")
