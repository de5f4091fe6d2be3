import { createPublicKey } from "node:crypto";
import { describe, expect, it } from "vitest";
import { AgentryError } from "@agentry/core";
import { parseApproversFile } from "./approvers-file.js";
import {
  decisionPayload,
  generateApproverKeyPair,
  parsePublicKey,
  signDecision,
  verifyDecision,
} from "./signing.js";

describe("approver keys and signatures", () => {
  const alice = generateApproverKeyPair();
  const keys = parseApproversFile(`alice: ${alice.publicKey}`);

  it("public keys are base64 of the raw 32 bytes; SPKI base64 is accepted too", () => {
    expect(Buffer.from(alice.publicKey, "base64")).toHaveLength(32);
    expect(alice.privateKey).toMatch(/^-----BEGIN PRIVATE KEY-----/);
    const spki = createPublicKey(alice.privateKey).export({ format: "der", type: "spki" }).toString("base64");
    expect(parsePublicKey(spki).equals(parsePublicKey(alice.publicKey))).toBe(true);
  });

  it("the payload names the approval, outcome, approver and time", () => {
    expect(
      decisionPayload({
        approvalId: "apr_1",
        outcome: "approve",
        approver: "alice",
        decidedAt: 5,
      }).toString(),
    ).toBe("agentry-approval-v1\napr_1\napprove\nalice\n5");
  });

  it("verifies only the exact decision signed", () => {
    const d = signDecision(alice.privateKey, {
      approvalId: "apr_1",
      outcome: "approve",
      approver: "alice",
      decidedAt: 5,
      reason: "ok",
    });
    expect(verifyDecision(keys, d)).toBe(true);
    expect(verifyDecision(keys, { ...d, reason: "changed reasons are not signed" })).toBe(true);
    expect(verifyDecision(keys, { ...d, approvalId: "apr_2" })).toBe(false);
    expect(verifyDecision(keys, { ...d, decidedAt: 6 })).toBe(false);
    expect(verifyDecision(keys, { ...d, outcome: "reject" })).toBe(false);
    expect(verifyDecision(keys, { ...d, approver: "mallory" })).toBe(false);
    expect(verifyDecision(keys, { ...d, signature: "garbage" })).toBe(false);
  });

  it("a bad private key is INVALID_INPUT", () => {
    expect(() =>
      signDecision("nope", { approvalId: "a", outcome: "approve", approver: "x", decidedAt: 1 }),
    ).toThrow(AgentryError);
  });

  it("the approvers file reports bad lines with their number", () => {
    const bob = generateApproverKeyPair();
    const ok = parseApproversFile(`# team\n\nalice: ${alice.publicKey}\nbob:${bob.publicKey}  # on call\n`);
    expect([...ok.keys()]).toEqual(["alice", "bob"]);
    const cases: [string, RegExp][] = [
      [`alice: ${alice.publicKey}\nthis is not a line`, /^f:2: expected/],
      [`alice: ${alice.publicKey}\n\nalice: ${bob.publicKey}`, /^f:3: approver "alice" listed twice/],
      [`alice: AAAA`, /^f:1: approver "alice": not an Ed25519 public key/],
    ];
    for (const [text, message] of cases) {
      try {
        parseApproversFile(text, "f");
        expect.unreachable();
      } catch (err) {
        expect(AgentryError.isInstance(err) && err.code).toBe("INVALID_CONFIG");
        expect((err as Error).message).toMatch(message);
      }
    }
  });
});
