// A backend's view: the Unleash server SDK (unleash-client) downloads the environment's flag
// definitions every 5 seconds and evaluates them in-process, for any user. Use a *client* token.
import { Unleash, InMemStorageProvider } from 'unleash-client';
import { url, token, userId, show, onExit } from './config.mjs';

const unleash = new Unleash({
  url: `${url}/api`,
  appName: 'studybuddy-api',
  customHeaders: { Authorization: token },
  refreshInterval: 5000, // milliseconds
  storageProvider: new InMemStorageProvider(), // no backup file in the temp directory
});

function showFlags() {
  const context = { userId };
  const flags = {};
  for (const { name } of unleash.getFeatureToggleDefinitions()) {
    const variant = unleash.getVariant(name, context);
    flags[name] = !unleash.isEnabled(name, context) ? 'off'
      : variant.enabled ? `on, variant ${variant.name} ${variant.payload?.value ?? ''}`.trim() : 'on';
  }
  show(flags);
}

// `synchronized`: the first definitions have arrived; `changed`: Flightdeck served new ones.
unleash.once('synchronized', () => {
  showFlags();
  unleash.on('changed', showFlags);
});
unleash.on('error', (error) => console.error('flightdeck:', error.message));

// The SDK's timers do not keep Node running (a real backend's HTTP server would).
const keepAlive = setInterval(() => {}, 60_000);
onExit(() => {
  clearInterval(keepAlive);
  unleash.destroy();
});
