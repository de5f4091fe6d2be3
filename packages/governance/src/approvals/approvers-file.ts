import { readFileSync } from "node:fs";
import type { KeyObject } from "node:crypto";
import { AgentryError } from "@agentry/core";
import { parsePublicKey, type ApproverKeys } from "./signing.js";

const LINE = /^([A-Za-z0-9][A-Za-z0-9._@-]*)\s*:\s*(\S+)$/;

/**
 * Parses an approvers file: one `<approver>: <public key>` per line (the output of
 * `agentry keys generate`), `#` comments and blank lines allowed. A bad line or a repeated
 * approver throws `INVALID_CONFIG` naming the file and line.
 */
export function parseApproversFile(text: string, file = "<approvers file>"): ApproverKeys {
  const keys = new Map<string, KeyObject>();
  text.split(/\r?\n/).forEach((raw, index) => {
    const line = raw.replace(/(^|\s)#.*$/, "").trim();
    if (line === "") return;
    const fail = (reason: string) =>
      new AgentryError("INVALID_CONFIG", `${file}:${index + 1}: ${reason}`, {
        details: { file, line: index + 1, reason },
      });
    const match = LINE.exec(line);
    if (!match) throw fail("expected `<approver>: <public key>`");
    const [, name, key] = match as unknown as [string, string, string];
    if (keys.has(name)) throw fail(`approver "${name}" listed twice`);
    try {
      keys.set(name, parsePublicKey(key));
    } catch {
      throw fail(`approver "${name}": not an Ed25519 public key (expected base64 of 32 raw bytes)`);
    }
  });
  return keys;
}

/** Reads and parses an approvers file (`AGENTRY_APPROVERS_FILE`). */
export function loadApproversFile(path: string): ApproverKeys {
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch (err) {
    throw new AgentryError(
      "INVALID_CONFIG",
      `${path}: cannot read approvers file: ${(err as Error).message}`,
      {
        details: { file: path, reason: "unreadable" },
        cause: err,
      },
    );
  }
  return parseApproversFile(text, path);
}
