import assert from "node:assert/strict";
import { test } from "node:test";
import { ConfigError, loadConfig } from "../../src/config.mjs";

const url = "postgres://postgres@127.0.0.1:5432/studybuddy";

test("defaults: port 3000 on loopback, no static files, no CORS", () => {
  const config = loadConfig({ DATABASE_URL: url });
  assert.equal(config.port, 3000);
  assert.equal(config.host, "127.0.0.1");
  assert.equal(config.staticDir, null);
  assert.deepEqual(config.corsOrigins, []);
  assert.match(config.version, /^\d+\.\d+\.\d+/);
});

test("everything comes from the environment", () => {
  const config = loadConfig({
    DATABASE_URL: url,
    PORT: "0",
    HOST: "0.0.0.0",
    STATIC_DIR: "web",
    CORS_ORIGINS: "https://a.example, https://b.example",
    STUDYBUDDY_VERSION: "2.0.0-rc.1",
  });
  assert.equal(config.port, 0);
  assert.equal(config.host, "0.0.0.0");
  assert.equal(config.staticDir, "web");
  assert.deepEqual(config.corsOrigins, ["https://a.example", "https://b.example"]);
  assert.equal(config.version, "2.0.0-rc.1");
});

test("a missing or foreign DATABASE_URL and a bad PORT are refused with a reason", () => {
  assert.throws(() => loadConfig({}), ConfigError);
  assert.throws(() => loadConfig({ DATABASE_URL: "mysql://x" }), /postgres/);
  assert.throws(() => loadConfig({ DATABASE_URL: url, PORT: "70000" }), /PORT/);
  assert.throws(() => loadConfig({ DATABASE_URL: url, PORT: "http" }), /PORT/);
});
