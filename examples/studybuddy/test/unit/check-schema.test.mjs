import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { test } from "node:test";
import { routes } from "../../src/app.mjs";
import { checkOpenApi } from "../../scripts/check-schema.mjs";

const specPath = new URL("../../api/openapi.yaml", import.meta.url);
const spec = readFileSync(specPath, "utf8");
const root = new URL("../..", import.meta.url).pathname;

test("api/openapi.yaml describes exactly the server's routes", () => {
  assert.deepEqual(checkOpenApi(spec), []);
});

test("a route the server has but the description lacks is reported", () => {
  const extra = [...routes, { method: "GET", path: "/api/badges", operationId: "listBadges" }];
  const problems = checkOpenApi(spec, { serverRoutes: extra });
  assert.equal(problems.length, 1);
  assert.match(problems[0].message, /GET \/api\/badges, which is not described/);
});

const minimal = (paths) => `openapi: 3.1.0
info: { title: T, version: "1" }
paths:
${paths}
`;

test("YAML errors and duplicate keys come with their line", () => {
  const problems = checkOpenApi("openapi: 3.1.0\ninfo:\n  title: a\n  title: b\n", { serverRoutes: [] });
  assert.equal(problems[0].line, 4);
  assert.match(problems[0].message, /unique/i);
});

test("the OpenAPI version, responses, path parameters, operationIds and $refs are checked", () => {
  const problems = checkOpenApi(
    minimal(`  /a/{id}:
    get:
      operationId: same
      responses: {}
  /b:
    get:
      operationId: same
      parameters:
        - { name: id, in: path, required: true }
      responses:
        "200": { $ref: "#/components/responses/Missing" }
        "20": { description: odd }`).replace("3.1.0", "3.0.3"),
    { serverRoutes: [] },
  ).map((p) => p.message);
  const expected = [
    /`openapi` must be a 3.1.x/,
    /GET \/a\/\{id\} has no responses/,
    /path parameter \{id\} is not declared/,
    /operationId same is also used/,
    /declares path parameter id, which \/b lacks/,
    /points at nothing/,
    /20 is not a status code/,
  ];
  for (const pattern of expected)
    assert.ok(
      problems.some((p) => pattern.test(p)),
      `${pattern} in ${problems}`,
    );
});

test("the command prints file:line:column and fails on a bad description", () => {
  const ok = spawnSync(process.execPath, ["scripts/check-schema.mjs", "db/migrations", "api/openapi.yaml"], {
    cwd: root,
    encoding: "utf8",
  });
  assert.equal(ok.status, 0, ok.stderr);
  const bad = spawnSync(process.execPath, ["scripts/check-schema.mjs", "db/migrations", "package.json"], {
    cwd: root,
    encoding: "utf8",
  });
  assert.equal(bad.status, 1);
  assert.match(bad.stderr, /^package\.json:\d+:\d+: /m);
});
