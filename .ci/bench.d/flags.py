"""Writes a realistic Unleash `/api/client/features` export with N flags for the benchmark.

The mix is what a product team's flag list looks like after a while: most flags are gradual
rollouts (flexibleRollout with a stickiness and a groupId), many with a constraint or two (IN,
STR_CONTAINS, NUM_GT, SEMVER_GTE, DATE_AFTER), some for named users (userWithId), some behind a
segment, some experiments with variants and payloads (JSON, string, number), and some off.
The first flag is always `maintenance-banner`, a kill switch on for everyone with no strategy
and no variant, so that toggling it flips its value for every context (the change-to-client
measurement toggles it). Deterministic: the same N gives the same file.

Usage: flags.py N OUT.json
"""

import json
import random
import sys

count, out = int(sys.argv[1]), sys.argv[2]
rng = random.Random(count)

AREAS = ["planner", "flashcards", "quiz", "reminders", "streaks", "notes", "groups", "tutor",
         "calendar", "onboarding", "billing", "profile", "search", "offline", "sync", "exam"]
THINGS = ["redesign", "v2", "ai-hints", "dark-mode", "share-sheet", "widgets", "export", "import",
          "badges", "leaderboard", "timer", "drag-drop", "voice-input", "templates", "digest",
          "autosave", "tips", "empty-state", "upsell", "haptics", "animations", "shortcuts"]
TYPES = ["release"] * 6 + ["experiment"] * 2 + ["operational", "permission", "kill-switch"]

SEGMENTS = [
    {"id": 1, "name": "beta-testers", "constraints": [
        {"contextName": "userId", "operator": "IN", "values": [f"u{i}" for i in range(1, 400, 7)]}]},
    {"id": 2, "name": "eu", "constraints": [
        {"contextName": "country", "operator": "IN", "values": ["DE", "FR", "NL", "ES", "IT", "PL"]}]},
    {"id": 3, "name": "schools", "constraints": [
        {"contextName": "email", "operator": "STR_ENDS_WITH", "values": [".edu", ".ac.uk"],
         "caseInsensitive": True}]},
]


def constraint():
    kind = rng.randrange(6)
    if kind == 0:
        return {"contextName": "appName", "operator": "IN",
                "values": rng.sample(["web", "ios", "android"], rng.randint(1, 2))}
    if kind == 1:
        return {"contextName": "email", "operator": "STR_CONTAINS",
                "values": ["@studybuddy.app", "@school"], "caseInsensitive": True}
    if kind == 2:
        return {"contextName": "lessonsCompleted", "operator": "NUM_GT", "value": str(rng.choice([3, 10, 50]))}
    if kind == 3:
        return {"contextName": "appVersion", "operator": "SEMVER_GTE",
                "value": f"2.{rng.randint(0, 9)}.{rng.randint(0, 5)}"}
    if kind == 4:
        return {"contextName": "plan", "operator": "IN", "values": ["pro", "team"],
                "inverted": rng.random() < 0.3}
    return {"contextName": "currentTime", "operator": "DATE_AFTER", "value": "2025-01-15T00:00:00Z"}


def payload(name):
    kind = rng.randrange(3)
    if kind == 0:
        return {"type": "json", "value": json.dumps({"layout": name, "cta": "Start studying", "limit": rng.randint(3, 30)})}
    if kind == 1:
        return {"type": "string", "value": f"{name}-copy"}
    return {"type": "number", "value": str(rng.choice([5, 10, 25, 60]))}


def variants(stickiness):
    names = rng.choice([["control", "treatment"], ["a", "b", "c"], ["blue", "green"]])
    out = []
    for n in names:
        v = {"name": n, "weight": 1000 // len(names), "weightType": "variable", "stickiness": stickiness}
        if rng.random() < 0.7:
            v["payload"] = payload(n)
        out.append(v)
    if rng.random() < 0.3:
        out[0]["overrides"] = [{"contextName": "userId", "values": ["u1", "u2"]}]
    return out


def strategies(name):
    roll = rng.random()
    if roll < 0.12:
        return [{"name": "default", "parameters": {}, "constraints": [constraint()]}]
    if roll < 0.22:
        users = ",".join(f"u{rng.randint(1, 1000)}" for _ in range(rng.randint(2, 20)))
        return [{"name": "userWithId", "parameters": {"userIds": users}, "constraints": []},
                {"name": "flexibleRollout", "parameters": {"rollout": "5", "stickiness": "default", "groupId": name},
                 "constraints": []}]
    found = []
    for index in range(rng.choice([1, 1, 1, 2])):
        stickiness = rng.choice(["default", "default", "userId", "sessionId"])
        s = {"name": "flexibleRollout", "sortOrder": index,
             "parameters": {"rollout": str(rng.choice([0, 5, 10, 25, 50, 100])),
                            "stickiness": stickiness, "groupId": name},
             "constraints": [constraint() for _ in range(rng.choice([0, 1, 1, 2]))]}
        if rng.random() < 0.15:
            s["segments"] = [rng.choice(SEGMENTS)["id"]]
        if rng.random() < 0.1:
            s["variants"] = variants(stickiness)
        found.append(s)
    return found


# Hand-written first flags, so that even the 5-flag file has each kind.
features = [
    {"name": "maintenance-banner", "type": "kill-switch", "enabled": True,
     "description": "Shows the maintenance banner.", "strategies": [], "variants": []},
    {"name": "smart-reminders", "type": "release", "enabled": True, "description": "Smart reminders.",
     "strategies": [{"name": "flexibleRollout",
                     "parameters": {"rollout": "10", "stickiness": "userId", "groupId": "smart-reminders"},
                     "constraints": [{"contextName": "appVersion", "operator": "SEMVER_GTE", "value": "2.3.0"},
                                     {"contextName": "appName", "operator": "IN", "values": ["ios", "android"]}]}],
     "variants": []},
    {"name": "quiz-layout", "type": "experiment", "enabled": True, "description": "Quiz layout experiment.",
     "strategies": [{"name": "flexibleRollout",
                     "parameters": {"rollout": "100", "stickiness": "default", "groupId": "quiz-layout"},
                     "constraints": [{"contextName": "lessonsCompleted", "operator": "NUM_GT", "value": "3"}]}],
     "variants": [
         {"name": "cards", "weight": 500, "weightType": "variable", "stickiness": "default",
          "payload": {"type": "json", "value": "{\"layout\":\"cards\",\"perPage\":5}"}},
         {"name": "list", "weight": 500, "weightType": "variable", "stickiness": "default",
          "payload": {"type": "string", "value": "list"}}]},
    {"name": "tutor-ai-hints", "type": "release", "enabled": False, "description": "AI hints from the tutor.",
     "strategies": [{"name": "userWithId", "parameters": {"userIds": "u1,u2,u3,u42"}, "constraints": []},
                    {"name": "flexibleRollout",
                     "parameters": {"rollout": "25", "stickiness": "default", "groupId": "tutor-ai-hints"},
                     "constraints": [{"contextName": "email", "operator": "STR_CONTAINS",
                                      "values": ["@studybuddy.app"], "caseInsensitive": True}]}],
     "variants": []},
    {"name": "study-streaks", "type": "release", "enabled": True, "description": "Study streaks.",
     "strategies": [{"name": "flexibleRollout",
                     "parameters": {"rollout": "50", "stickiness": "default", "groupId": "study-streaks"},
                     "constraints": [], "segments": [2]}],
     "variants": []},
]
names = {f["name"] for f in features}
while len(features) < count:
    name = f"{rng.choice(AREAS)}-{rng.choice(THINGS)}"
    if name in names:
        name = f"{name}-{len(features)}"
    names.add(name)
    flag_type = rng.choice(TYPES)
    feature = {
        "name": name,
        "type": flag_type,
        "description": f"{name.replace('-', ' ').capitalize()}.",
        "enabled": rng.random() >= 0.2,
        "impressionData": rng.random() < 0.1,
        "strategies": strategies(name),
        "variants": variants("default") if flag_type == "experiment" or rng.random() < 0.15 else [],
    }
    features.append(feature)

used = {seg for f in features for s in f["strategies"] for seg in s.get("segments", [])}
body = {"version": 2, "features": features[:count],
        "segments": [s for s in SEGMENTS if s["id"] in used]}
with open(out, "w") as f:
    json.dump(body, f, indent=1)
