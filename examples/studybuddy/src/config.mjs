// The API's configuration, read once from the environment.

import { readFileSync } from "node:fs";

const pkg = JSON.parse(readFileSync(new URL("../package.json", import.meta.url), "utf8"));

export class ConfigError extends Error {}

/**
 * Reads the configuration from `env` (process.env by default).
 *
 * - DATABASE_URL (required): the PostgreSQL connection string.
 * - PORT (default 3000; 0 picks a free port), HOST (default 127.0.0.1).
 * - STATIC_DIR: serve this directory at `/` (the web app); ASSETS_DIR: serve it at `/assets/`.
 * - CORS_ORIGINS: comma-separated origins allowed to call the API from a browser, or `*`.
 * - STUDYBUDDY_VERSION: the version `/healthz` reports (default: package.json's).
 */
export function loadConfig(env = process.env) {
  const databaseUrl = env.DATABASE_URL?.trim();
  if (!databaseUrl) {
    throw new ConfigError(
      "DATABASE_URL is not set; give the PostgreSQL connection string, e.g. postgres://postgres@127.0.0.1:5432/studybuddy",
    );
  }
  if (!/^postgres(ql)?:\/\//.test(databaseUrl)) {
    throw new ConfigError("DATABASE_URL must start with postgres:// or postgresql://");
  }
  return {
    databaseUrl,
    port: parsePort(env.PORT),
    host: env.HOST?.trim() || "127.0.0.1",
    staticDir: env.STATIC_DIR?.trim() || null,
    assetsDir: env.ASSETS_DIR?.trim() || null,
    corsOrigins: (env.CORS_ORIGINS ?? "")
      .split(",")
      .map((origin) => origin.trim())
      .filter(Boolean),
    version: env.STUDYBUDDY_VERSION?.trim() || pkg.version,
  };
}

function parsePort(raw) {
  if (raw === undefined || raw.trim() === "") return 3000;
  const port = Number(raw);
  if (!Number.isInteger(port) || port < 0 || port > 65535) {
    throw new ConfigError(`PORT must be a whole number from 0 to 65535, not ${JSON.stringify(raw)}`);
  }
  return port;
}
