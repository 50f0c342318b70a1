// Starts the API: `node src/main.mjs` with DATABASE_URL (and optionally PORT, HOST, STATIC_DIR,
// ASSETS_DIR, CORS_ORIGINS) in the environment. Stops cleanly on SIGTERM and SIGINT.

import { ConfigError, loadConfig } from "./config.mjs";
import { createServer } from "./app.mjs";
import { createPool, createPostgresStore } from "./store/postgres.mjs";

let config;
try {
  config = loadConfig();
} catch (error) {
  if (!(error instanceof ConfigError)) throw error;
  console.error(`studybuddy: ${error.message}`);
  process.exit(2);
}

const pool = createPool(config.databaseUrl);
pool.on("error", (error) => console.error("studybuddy: idle database connection failed:", error.message));
const server = createServer({ ...config, store: createPostgresStore(pool) });

server.listen(config.port, config.host, () => {
  const { port } = server.address();
  console.log(`studybuddy ${config.version}: listening on http://${config.host}:${port}`);
});

let stopping = false;
for (const signal of ["SIGTERM", "SIGINT"]) {
  process.on(signal, () => {
    if (stopping) return;
    stopping = true;
    console.log(`studybuddy: ${signal}, finishing open requests`);
    server.close(() => pool.end().then(() => process.exit(0)));
    server.closeIdleConnections();
    setTimeout(() => process.exit(1), 10_000).unref();
  });
}
