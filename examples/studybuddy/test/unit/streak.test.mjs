import assert from "node:assert/strict";
import { test } from "node:test";
import { computeStreak, isValidTimeZone, localDay } from "../../src/streak.mjs";

test("no study days means no streak", () => {
  assert.deepEqual(computeStreak([], "2025-03-10"), {
    current: 0,
    longest: 0,
    today_done: false,
    last_study_day: null,
  });
});

test("consecutive days up to today make the current streak", () => {
  const streak = computeStreak(["2025-03-08", "2025-03-09", "2025-03-10"], "2025-03-10");
  assert.equal(streak.current, 3);
  assert.equal(streak.longest, 3);
  assert.equal(streak.today_done, true);
});

test("a streak that ended yesterday is still alive today", () => {
  const streak = computeStreak(["2025-03-08", "2025-03-09"], "2025-03-10");
  assert.equal(streak.current, 2);
  assert.equal(streak.today_done, false);
  assert.equal(streak.last_study_day, "2025-03-09");
});

test("a missed day breaks the streak but the longest is remembered", () => {
  const days = ["2025-02-01", "2025-02-02", "2025-02-03", "2025-02-04", "2025-03-07", "2025-03-08"];
  const streak = computeStreak(days, "2025-03-10");
  assert.equal(streak.current, 0);
  assert.equal(streak.longest, 4);
});

test("duplicates, any order and future days do not change the count", () => {
  const days = ["2025-03-10", "2025-03-09", "2025-03-10", "2025-03-11"];
  assert.equal(computeStreak(days, "2025-03-10").current, 2);
});

test("streaks run across month and year ends and leap days", () => {
  assert.equal(computeStreak(["2024-12-31", "2025-01-01"], "2025-01-01").current, 2);
  assert.equal(computeStreak(["2024-02-28", "2024-02-29", "2024-03-01"], "2024-03-01").current, 3);
});

test("a bad day string is refused", () => {
  assert.throws(() => computeStreak(["10.03.2025"], "2025-03-10"), RangeError);
});

test("the local day depends on the time zone", () => {
  const instant = new Date("2025-03-09T23:30:00Z");
  assert.equal(localDay(instant, "UTC"), "2025-03-09");
  assert.equal(localDay(instant, "Europe/Berlin"), "2025-03-10");
  assert.equal(localDay(instant, "America/New_York"), "2025-03-09");
});

test("only IANA zones are time zones", () => {
  assert.equal(isValidTimeZone("Europe/Berlin"), true);
  assert.equal(isValidTimeZone("UTC"), true);
  assert.equal(isValidTimeZone("Mars/Olympus_Mons"), false);
  assert.equal(isValidTimeZone(""), false);
  assert.equal(isValidTimeZone(undefined), false);
});
