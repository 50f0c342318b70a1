// OpenFeature in a backend: the OFREP server provider asks Flightdeck for one flag at every
// evaluation, with that request's context. Here we evaluate every 2 seconds (and print the flags
// when they differ from last time). A *client* or *frontend* token both work.
import { OpenFeature } from '@openfeature/server-sdk';
import { OFREPProvider } from '@openfeature/ofrep-provider';
import { url, token, userId, show, onExit } from './config.mjs';
import { FLAGS, read } from './flags.mjs';

await OpenFeature.setProviderAndWait(new OFREPProvider({
  baseUrl: url,
  headers: [['Authorization', `Bearer ${token}`]],
}));
const client = OpenFeature.getClient();

async function check() {
  const entries = await Promise.all(Object.entries(FLAGS).map(async ([name, fallback]) =>
    [name, await read(client, name, fallback, { targetingKey: userId })]));
  show(Object.fromEntries(entries));
}
await check();
const timer = setInterval(check, 2000);

onExit(async () => {
  clearInterval(timer);
  await OpenFeature.close();
});
