// What every example reads from its environment.

export const url = required('FLIGHTDECK_URL').replace(/\/+$/, ''); // e.g. http://127.0.0.1:3000
export const token = required('FLIGHTDECK_TOKEN'); // studybuddy:staging.…, from `flightdeck flags sdk-token create`
export const userId = process.env.USER_ID ?? 'ada'; // whose flags to show

function required(name) {
  const value = process.env[name];
  if (!value) {
    console.error(`Set ${name} (see README.md).`);
    process.exit(2);
  }
  return value;
}

let last;

/** Prints the flags, one line each, when they differ from what was printed last. */
export function show(flags) {
  const sorted = Object.fromEntries(Object.entries(flags).sort(([a], [b]) => a.localeCompare(b)));
  if (JSON.stringify(sorted) === last) return;
  last = JSON.stringify(sorted);
  console.log(`${new Date().toISOString().slice(11, 19)} flags for ${userId}:`);
  for (const [name, value] of Object.entries(sorted)) console.log(`  ${name.padEnd(24)} ${value}`);
}

/** Stops the SDK on Ctrl-C. */
export function onExit(stop) {
  process.once('SIGINT', async () => {
    await stop();
    process.exit(0);
  });
}
