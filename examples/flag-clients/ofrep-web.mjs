// OpenFeature in a browser or mobile app: the OFREP web provider evaluates all flags for the
// current user at once and re-fetches the moment Flightdeck says they changed (Server-Sent Events).
// Use a *frontend* token.
import { EventSource } from 'eventsource';
import { OpenFeature, ProviderEvents } from '@openfeature/web-sdk';
import { OFREPWebProvider } from '@openfeature/ofrep-web-provider';
import { url, token, userId, show, onExit } from './config.mjs';
import { FLAGS, read } from './flags.mjs';

// A browser has both of these; Node has neither.
globalThis.EventSource ??= EventSource;
const cacheMode = typeof localStorage === 'undefined' ? 'disabled' : 'local-cache-first';

await OpenFeature.setContext({ targetingKey: userId });
await OpenFeature.setProviderAndWait(new OFREPWebProvider({
  baseUrl: url,
  headers: [['Authorization', `Bearer ${token}`]],
  cacheMode,
}));
const client = OpenFeature.getClient();

// Evaluations are local (the provider holds the last answer), so reading them is free.
const showAll = () => show(Object.fromEntries(Object.entries(FLAGS).map(([name, fallback]) => [name, read(client, name, fallback)])));
showAll();
client.addHandler(ProviderEvents.ConfigurationChanged, showAll);
client.addHandler(ProviderEvents.Error, (event) => console.error('flightdeck:', event?.message));

onExit(() => OpenFeature.close());
