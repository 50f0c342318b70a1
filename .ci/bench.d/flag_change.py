"""Measures how long a flag change takes to reach a connected SDK, the way an OpenFeature web
provider follows it: it holds the OFREP event stream open, and on `refetchEvaluation` posts the
bulk evaluation again.

For each environment given, N times: toggle FLAG with `flightdeck flags set` and measure, from
just before the CLI is launched, (a) the refetch event arriving on the stream and (b) a re-fetched
bulk answer showing the new value. The figures include the CLI's own start-up (a process, a
database connection) and its transaction, so they are an upper bound of what the server adds.

Usage: flag_change.py FLIGHTDECK_BIN DATA_DIR URL PROJECT FLAG [ENVIRONMENT TOKEN LABEL]...
Prints markdown table rows (the caller prints the header).
"""

import http.client
import json
import os
import queue
import statistics
import subprocess
import sys
import threading
import time
import urllib.parse

bin_path, data_dir, url, project, flag = sys.argv[1:6]
targets = sys.argv[6:]
base = urllib.parse.urlparse(url)
N = int(os.environ.get("FLAG_CHANGES", "20"))
cli_env = {**os.environ, "FLIGHTDECK_LOG": "warn"}


def bulk(token):
    conn = http.client.HTTPConnection(base.hostname, base.port, timeout=10)
    body = json.dumps({"context": {"targetingKey": "u1"}})
    conn.request("POST", "/ofrep/v1/evaluate/flags", body,
                 {"Authorization": token, "Content-Type": "application/json"})
    response = conn.getresponse()
    data = response.read()
    conn.close()
    assert response.status == 200, (response.status, data[:300])
    return json.loads(data)


def value_of(answer):
    for item in answer["flags"]:
        if item["key"] == flag:
            return item["value"]
    raise SystemExit(f"error: the bulk evaluation has no flag {flag}")


def follow(token, uri, events, connected):
    conn = http.client.HTTPConnection(base.hostname, base.port, timeout=300)
    conn.request("GET", uri, headers={"Accept": "text/event-stream"})
    response = conn.getresponse()
    assert response.status == 200, response.status
    connected.set()
    for raw in response:
        line = raw.decode().rstrip("\r\n")
        if line.startswith("data:"):
            events.put((time.perf_counter(), json.loads(line[5:].strip())))


def ms(seconds):
    return f"{seconds * 1000:.0f} ms"


def measure(environment, token):
    answer = bulk(token)
    uri = answer["eventStreams"][0]["endpoint"]["requestUri"]
    events, connected = queue.Queue(), threading.Event()
    threading.Thread(target=follow, args=(token, uri, events, connected), daemon=True).start()
    assert connected.wait(10), "the event stream did not open"
    state = value_of(answer)
    assert isinstance(state, bool), f"{flag} must be a plain on/off flag, its value is {state!r}"
    to_event, to_value, cli_runs, refetches = [], [], [], []
    for _ in range(N):
        time.sleep(0.2)
        while not events.empty():
            events.get_nowait()
        state = not state
        t0 = time.perf_counter()
        cli = subprocess.Popen(
            [bin_path, "flags", "set", "--project", project, "--environment", environment, flag,
             "on" if state else "off", "--data-dir", data_dir],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=cli_env)
        exited = []
        waiter = threading.Thread(target=lambda: (cli.wait(), exited.append(time.perf_counter())))
        waiter.start()
        try:
            arrived, event = events.get(timeout=10)
        except queue.Empty:
            waiter.join()
            raise SystemExit(f"error: no refetch event within 10 s (CLI: {cli.stderr.read().decode()})")
        assert event.get("type") == "refetchEvaluation", event
        to_event.append(arrived - t0)
        fetches = 0
        while True:
            fetches += 1
            if value_of(bulk(token)) == state:
                break
            assert time.perf_counter() - t0 < 10, "the bulk answer did not change within 10 s"
        to_value.append(time.perf_counter() - t0)
        refetches.append(fetches)
        waiter.join()
        assert cli.returncode == 0, cli.stderr.read().decode()
        cli_runs.append(exited[0] - t0)
    return to_event, to_value, cli_runs, refetches


assert targets and len(targets) % 3 == 0, __doc__
for environment, token, label in zip(targets[0::3], targets[1::3], targets[2::3]):
    to_event, to_value, cli_runs, refetches = measure(environment, token)
    extra = "" if max(refetches) == 1 else f"; up to {max(refetches)} fetches"
    print(f"| {label}: change → SSE `refetchEvaluation` | {ms(statistics.median(to_event))} | {ms(max(to_event))} |")
    print(f"| {label}: change → re-fetched OFREP bulk shows it{extra} | {ms(statistics.median(to_value))} | {ms(max(to_value))} |")
    print(f"| {label}: the CLI alone (launch to exit) | {ms(statistics.median(cli_runs))} | {ms(max(cli_runs))} |")
