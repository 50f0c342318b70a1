// The flags the OpenFeature examples read, each with the value the app uses when Flightdeck
// cannot answer. The default's type is the flag's type: OFREP sends a boolean (on/off) unless the
// variant has a payload (string, number or JSON object). Edit to match your flags.
export const FLAGS = {
  'study-streaks': false,
  'smart-reminders': false,
  'dark-mode': false,
};

/**
 * Evaluates one flag with the typed call its default asks for and says what came out. The web
 * SDK answers at once, the server SDK with a promise; this takes both.
 */
export function read(client, name, fallback, context) {
  const kind = { boolean: 'Boolean', string: 'String', number: 'Number' }[typeof fallback] ?? 'Object';
  const details = client[`get${kind}Details`](name, fallback, context);
  return details instanceof Promise ? details.then(describe) : describe(details);
}

function describe({ value, reason, variant, errorCode }) {
  const shown = typeof value === 'boolean' ? (value ? 'on' : 'off') : JSON.stringify(value);
  return `${shown} (${errorCode ? `the default: ${errorCode}` : `${reason}, variant ${variant}`})`;
}
