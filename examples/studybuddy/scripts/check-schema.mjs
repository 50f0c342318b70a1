#!/usr/bin/env node
// Checks what the `schema` job publishes: the database migrations and the API description.
//
//   node scripts/check-schema.mjs db/migrations api/openapi.yaml
//
// Migrations: named NNNN_words.sql, numbered from 0001 with no gaps or duplicates, not empty,
// and free of statements that cannot run in the transaction they share; each NNNN_words.down.sql
// (its undo, run by a rollback) beside the migration it undoes, held to the same rules.
// API description: YAML that parses (no duplicate keys), an OpenAPI 3.1 document with info,
// paths and operations that have responses, path parameters that match their templates,
// unique operationIds, local $refs that resolve, and exactly the routes the server serves.
// Every problem is printed as file:line:column: message; the exit code is 1 when there is one.

import { readFile } from "node:fs/promises";
import path from "node:path";
import { LineCounter, parseDocument } from "yaml";
import { routes } from "../src/app.mjs";
import { MigrationError, readMigrations } from "../src/migrations.mjs";

const METHODS = ["get", "put", "post", "delete", "options", "head", "patch", "trace"];
const PATH_ITEM_KEYS = new Set([...METHODS, "summary", "description", "servers", "parameters", "$ref"]);
const STATUS = /^([1-5]\d\d|[1-5]XX|default)$/;

/** Checks an OpenAPI document given as YAML text; returns `[{ line, column, message }]`. */
export function checkOpenApi(text, { serverRoutes = routes } = {}) {
  const lineCounter = new LineCounter();
  const doc = parseDocument(text, { lineCounter, prettyErrors: false, uniqueKeys: true });
  const at = (range) => {
    const { line, col } = lineCounter.linePos(range?.[0] ?? 0);
    return { line, column: col };
  };
  if (doc.errors.length) return doc.errors.map((e) => ({ ...at(e.pos), message: e.message.split("\n")[0] }));

  const problems = [];
  const root = doc.toJS();
  const report = (keyPath, message) => {
    const node = keyPath.length ? doc.getIn(keyPath, true) : doc.contents;
    problems.push({ ...at(node?.range), message });
  };
  const isMap = (v) => v !== null && typeof v === "object" && !Array.isArray(v);

  if (!isMap(root)) return [{ line: 1, column: 1, message: "the document is not a YAML mapping" }];
  if (typeof root.openapi !== "string" || !/^3\.1\.\d+$/.test(root.openapi)) {
    report(root.openapi === undefined ? [] : ["openapi"], "`openapi` must be a 3.1.x version string");
  }
  if (!isMap(root.info)) report([], "`info` is missing");
  else {
    if (typeof root.info.title !== "string") report(["info"], "`info.title` must be a string");
    if (typeof root.info.version !== "string") report(["info"], "`info.version` must be a string");
  }
  if (!isMap(root.paths)) {
    report([], "`paths` is missing");
    return problems;
  }

  // Local $refs must point at something.
  const resolve = (ref) =>
    ref
      .slice(2)
      .split("/")
      .map((part) => part.replace(/~1/g, "/").replace(/~0/g, "~"))
      .reduce((node, key) => (isMap(node) || Array.isArray(node) ? node[key] : undefined), root);
  const walk = (node, keyPath) => {
    if (Array.isArray(node)) node.forEach((item, i) => walk(item, [...keyPath, i]));
    else if (isMap(node)) {
      for (const [key, value] of Object.entries(node)) {
        if (key === "$ref" && typeof value === "string") {
          if (!value.startsWith("#/")) report([...keyPath, key], `only local $refs are supported: ${value}`);
          else if (resolve(value) === undefined) report([...keyPath, key], `$ref ${value} points at nothing`);
        } else walk(value, [...keyPath, key]);
      }
    }
  };
  walk(root, []);
  const deref = (node) => (isMap(node) && typeof node.$ref === "string" ? (resolve(node.$ref) ?? {}) : node);

  const operationIds = new Map();
  const described = [];
  for (const [route, item] of Object.entries(root.paths)) {
    const itemPath = ["paths", route];
    if (!route.startsWith("/")) report(itemPath, `path ${route} must start with /`);
    if (!isMap(item)) {
      report(itemPath, `${route} is not a mapping`);
      continue;
    }
    for (const key of Object.keys(item)) {
      if (!PATH_ITEM_KEYS.has(key) && !key.startsWith("x-"))
        report([...itemPath, key], `${route}: unknown key ${key}`);
    }
    const templated = [...route.matchAll(/\{([^}]+)\}/g)].map((m) => m[1]);
    const shared = (item.parameters ?? []).map(deref);
    for (const method of METHODS.filter((m) => m in item)) {
      const opPath = [...itemPath, method];
      const op = item[method];
      const name = `${method.toUpperCase()} ${route}`;
      if (!isMap(op)) {
        report(opPath, `${name} is not a mapping`);
        continue;
      }
      described.push({ method: method.toUpperCase(), path: route, operationId: op.operationId });
      if (typeof op.operationId !== "string") report(opPath, `${name} has no operationId`);
      else if (operationIds.has(op.operationId)) {
        report(
          [...opPath, "operationId"],
          `operationId ${op.operationId} is also used by ${operationIds.get(op.operationId)}`,
        );
      } else operationIds.set(op.operationId, name);
      if (!isMap(op.responses) || Object.keys(op.responses).length === 0) {
        report(opPath, `${name} has no responses`);
      } else {
        for (const [status, response] of Object.entries(op.responses)) {
          if (!STATUS.test(status))
            report([...opPath, "responses", status], `${name}: ${status} is not a status code`);
          const resolved = deref(response);
          if (!isMap(resolved) || typeof resolved.description !== "string") {
            report([...opPath, "responses", status], `${name} ${status}: a response needs a description`);
          }
        }
      }
      const params = [...shared, ...(op.parameters ?? []).map(deref)];
      const inPath = params.filter((p) => isMap(p) && p.in === "path");
      for (const name2 of templated) {
        const param = inPath.find((p) => p.name === name2);
        if (!param) report(opPath, `${name}: the path parameter {${name2}} is not declared`);
        else if (param.required !== true)
          report(opPath, `${name}: the path parameter {${name2}} must be required`);
      }
      for (const param of inPath) {
        if (!templated.includes(param.name))
          report(opPath, `${name}: declares path parameter ${param.name}, which ${route} lacks`);
      }
      for (const param of params) {
        if (
          !isMap(param) ||
          typeof param.name !== "string" ||
          !["query", "header", "path", "cookie"].includes(param.in)
        ) {
          report(opPath, `${name}: a parameter needs a name and in: query, header, path or cookie`);
        }
      }
    }
  }

  // The description and the server must agree, route for route.
  const key = (r) => `${r.method} ${r.path}`;
  const served = new Map(serverRoutes.map((r) => [key(r), r]));
  for (const op of described) {
    const route = served.get(key(op));
    if (!route) report(["paths", op.path], `${key(op)} is described but the server has no such route`);
    else if (route.operationId !== op.operationId) {
      report(
        ["paths", op.path, op.method.toLowerCase()],
        `${key(op)}: operationId ${op.operationId}, the server calls it ${route.operationId}`,
      );
    }
  }
  const describedKeys = new Set(described.map(key));
  for (const route of serverRoutes) {
    if (!describedKeys.has(key(route)))
      report(["paths"], `the server serves ${key(route)}, which is not described`);
  }
  return problems;
}

if (process.argv[1] === import.meta.filename) {
  const [migrationsDir, specFile] = process.argv.slice(2);
  if (!migrationsDir || !specFile) {
    console.error("usage: check-schema.mjs MIGRATIONS_DIR OPENAPI_FILE");
    process.exit(2);
  }
  let failed = false;
  try {
    const migrations = await readMigrations(migrationsDir);
    for (const m of migrations) {
      const undo =
        m.down === null ? "no down script (a rollback restores the backup)" : "with its down script";
      console.log(`ok  ${path.join(migrationsDir, m.file)}  sha256 ${m.sha256.slice(0, 12)}  ${undo}`);
    }
    const downs = migrations.filter((m) => m.down !== null).length;
    console.log(
      `check-schema: ${migrations.length} migrations, versions 0001–${String(migrations.length).padStart(4, "0")}, ` +
        `${downs} with down scripts`,
    );
  } catch (error) {
    failed = true;
    if (error instanceof MigrationError) {
      for (const problem of error.problems) console.error(`${migrationsDir.replace(/\/$/, "")}/${problem}`);
    } else {
      console.error(`${migrationsDir}: ${error.message}`);
    }
  }
  try {
    const problems = checkOpenApi(await readFile(specFile, "utf8"));
    for (const p of problems) console.error(`${specFile}:${p.line}:${p.column}: ${p.message}`);
    if (problems.length) failed = true;
    else
      console.log(
        `check-schema: ${specFile} is a valid OpenAPI 3.1 description of every route the server has`,
      );
  } catch (error) {
    failed = true;
    console.error(`${specFile}: ${error.message}`);
  }
  process.exit(failed ? 1 : 0);
}
