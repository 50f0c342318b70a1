// Study streaks: how many days in a row the student finished at least one session.
//
// Days are local calendar days in the student's time zone, written `YYYY-MM-DD`. A streak is
// still alive when the last study day was yesterday: today is not over yet.

const DAY_MS = 24 * 60 * 60 * 1000;
const ISO_DAY = /^\d{4}-\d{2}-\d{2}$/;

/** True when `timeZone` is an IANA zone name this runtime knows (e.g. Europe/Berlin). */
export function isValidTimeZone(timeZone) {
  if (typeof timeZone !== "string" || timeZone === "") return false;
  try {
    new Intl.DateTimeFormat("en-US", { timeZone });
    return true;
  } catch {
    return false;
  }
}

/** The calendar day (`YYYY-MM-DD`) that `instant` falls on in `timeZone`. */
export function localDay(instant, timeZone) {
  const parts = new Intl.DateTimeFormat("en-US", {
    timeZone,
    year: "numeric",
    month: "2-digit",
    day: "2-digit",
  }).formatToParts(instant);
  const part = (type) => parts.find((p) => p.type === type).value;
  return `${part("year")}-${part("month")}-${part("day")}`;
}

function dayNumber(day) {
  if (!ISO_DAY.test(day)) throw new RangeError(`not a YYYY-MM-DD day: ${day}`);
  const [y, m, d] = day.split("-").map(Number);
  return Math.round(Date.UTC(y, m - 1, d) / DAY_MS);
}

/**
 * Computes the streak from the days with a finished session (any order, duplicates allowed)
 * and today's date. Days after `today` (clock skew, a session finished "tomorrow" in another
 * zone) are ignored.
 *
 * @returns {{current: number, longest: number, today_done: boolean, last_study_day: string|null}}
 */
export function computeStreak(days, today) {
  const todayN = dayNumber(today);
  const numbers = [...new Set([...days].map(dayNumber))].filter((n) => n <= todayN).sort((a, b) => a - b);
  if (numbers.length === 0) {
    return { current: 0, longest: 0, today_done: false, last_study_day: null };
  }
  let longest = 1;
  let run = 1;
  for (let i = 1; i < numbers.length; i += 1) {
    run = numbers[i] === numbers[i - 1] + 1 ? run + 1 : 1;
    longest = Math.max(longest, run);
  }
  const last = numbers[numbers.length - 1];
  // `run` is now the length of the run that ends on the last study day.
  const current = last >= todayN - 1 ? run : 0;
  return {
    current,
    longest,
    today_done: last === todayN,
    last_study_day: new Date(last * DAY_MS).toISOString().slice(0, 10),
  };
}
