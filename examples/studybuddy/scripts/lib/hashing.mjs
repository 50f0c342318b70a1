// Content hashes for immutable file names: `app.js` with content hash 3f2a9c1b… becomes
// `app.3f2a9c1b.js`. Eight hex digits of SHA-256 name the file; the manifest keeps all 64.

import { createHash } from "node:crypto";
import path from "node:path";

export function sha256(content) {
  return createHash("sha256").update(content).digest("hex");
}

/** `dir/name.ext` → `dir/name.<first 8 hex digits of sha256>.ext` */
export function hashedName(relativePath, digest) {
  const ext = path.posix.extname(relativePath);
  return `${relativePath.slice(0, relativePath.length - ext.length)}.${digest.slice(0, 8)}${ext}`;
}

/** The manifest entry for a file written as `file` with `content`. */
export function manifestEntry(file, content) {
  return { file, size: Buffer.byteLength(content), sha256: sha256(content) };
}

/** The commit being built, when this is a git checkout (CI and the run engine set GIT_COMMIT). */
export async function currentCommit(cwd) {
  if (process.env.GIT_COMMIT) return process.env.GIT_COMMIT;
  const { execFileSync } = await import("node:child_process");
  try {
    return execFileSync("git", ["rev-parse", "HEAD"], { cwd, stdio: ["ignore", "pipe", "ignore"] })
      .toString()
      .trim();
  } catch {
    return null;
  }
}
