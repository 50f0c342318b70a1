// A browser or mobile app's view: the Unleash frontend SDK (unleash-proxy-client) asks Flightdeck's
// Frontend API for this user's flags every 5 seconds. Use a *frontend* token.
import { UnleashClient } from 'unleash-proxy-client';
import { url, token, userId, show, onExit } from './config.mjs';

const unleash = new UnleashClient({
  url: `${url}/api/frontend`,
  clientKey: token,
  appName: 'studybuddy-web',
  refreshInterval: 5, // seconds
  context: { userId },
});

// `update` fires whenever the answer changes (Flightdeck answers 304 otherwise).
unleash.on('update', () => {
  const flags = {};
  // The Frontend API lists the flags that are on for this user; every other flag is off.
  for (const toggle of unleash.getAllToggles()) {
    const { variant } = toggle;
    flags[toggle.name] = variant.enabled ? `on, variant ${variant.name} ${variant.payload?.value ?? ''}`.trim() : 'on';
  }
  show(flags);
});
unleash.on('error', (error) => console.error('flightdeck:', error));

await unleash.start();
onExit(() => unleash.stop());
