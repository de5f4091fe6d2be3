import {
  createPrivateKey,
  createPublicKey,
  generateKeyPairSync,
  sign,
  verify,
  type KeyObject,
} from "node:crypto";
import { AgentryError } from "@agentry/core";
import type { DecisionOutcome, SignedDecision } from "./types.js";

/** Public keys of the enrolled approvers, by name. */
export type ApproverKeys = ReadonlyMap<string, KeyObject>;

/** DER prefix of an Ed25519 SubjectPublicKeyInfo; the raw 32-byte key follows it. */
const SPKI_ED25519_PREFIX = Buffer.from("302a300506032b6570032100", "hex");

/** Domain tag of the signed payload; a new format gets a new tag. */
export const DECISION_PAYLOAD_TAG = "agentry-approval-v1";

/**
 * A new Ed25519 key pair for an approver. `publicKey` is the raw 32-byte key in base64
 * (one short line, the form the approvers file uses); `privateKey` is PKCS#8 PEM.
 */
export function generateApproverKeyPair(): { publicKey: string; privateKey: string } {
  const { publicKey, privateKey } = generateKeyPairSync("ed25519");
  return {
    publicKey: encodePublicKey(publicKey),
    privateKey: privateKey.export({ format: "pem", type: "pkcs8" }).toString(),
  };
}

/** Raw 32-byte base64 form of an Ed25519 public key. */
export function encodePublicKey(key: KeyObject): string {
  return key.export({ format: "der", type: "spki" }).subarray(SPKI_ED25519_PREFIX.length).toString("base64");
}

/**
 * Parses a public key given as base64 of the raw 32 bytes (preferred) or of the SPKI DER
 * (44 bytes). Throws `INVALID_CONFIG` otherwise.
 */
export function parsePublicKey(text: string): KeyObject {
  const trimmed = text.trim();
  const der = /^[A-Za-z0-9+/]+={0,2}$/.test(trimmed) ? Buffer.from(trimmed, "base64") : Buffer.alloc(0);
  let spki: Buffer | undefined;
  if (der.length === 32) spki = Buffer.concat([SPKI_ED25519_PREFIX, der]);
  else if (der.length === 44 && der.subarray(0, 12).equals(SPKI_ED25519_PREFIX)) spki = der;
  if (!spki)
    throw new AgentryError("INVALID_CONFIG", "not an Ed25519 public key (expected base64 of 32 raw bytes)");
  return createPublicKey({ key: spki, format: "der", type: "spki" });
}

/**
 * The exact bytes an approver signs. Naming the approval id means a signature for one
 * approval can never be replayed on another; naming the approver and time binds it to them.
 */
export function decisionPayload(d: {
  approvalId: string;
  outcome: DecisionOutcome;
  approver: string;
  decidedAt: number;
}): Buffer {
  return Buffer.from(
    `${DECISION_PAYLOAD_TAG}\n${d.approvalId}\n${d.outcome}\n${d.approver}\n${d.decidedAt}`,
    "utf8",
  );
}

/** Signs a decision with the approver's PEM private key. Throws `INVALID_INPUT` on a bad key. */
export function signDecision(
  privateKeyPem: string,
  d: { approvalId: string; outcome: DecisionOutcome; approver: string; decidedAt: number; reason?: string },
): SignedDecision {
  let key: KeyObject;
  try {
    key = createPrivateKey(privateKeyPem);
  } catch (err) {
    throw new AgentryError("INVALID_INPUT", `bad private key: ${(err as Error).message}`, { cause: err });
  }
  if (key.asymmetricKeyType !== "ed25519")
    throw new AgentryError("INVALID_INPUT", "private key is not Ed25519");
  const signature = sign(null, decisionPayload(d), key).toString("base64");
  return {
    approvalId: d.approvalId,
    approver: d.approver,
    outcome: d.outcome,
    decidedAt: d.decidedAt,
    ...(d.reason === undefined ? {} : { reason: d.reason }),
    signature,
  };
}

/**
 * True when the approver is enrolled and the signature is theirs over this exact decision
 * (approval id, outcome, approver, time). Never throws: anything malformed is `false`.
 */
export function verifyDecision(
  keys: ApproverKeys,
  d: {
    approvalId: string;
    outcome: string;
    approver: string;
    decidedAt: number;
    signature: string;
    reason?: string;
  },
): boolean {
  const key = keys.get(d.approver);
  if (!key || (d.outcome !== "approve" && d.outcome !== "reject") || !Number.isFinite(d.decidedAt))
    return false;
  try {
    return verify(
      null,
      decisionPayload({ ...d, outcome: d.outcome }),
      key,
      Buffer.from(d.signature, "base64"),
    );
  } catch {
    return false;
  }
}
