import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { LineCounter, isNode, parseDocument, type Document } from "yaml";
import { z } from "zod";
import { AgentryError, durationMs } from "@agentry/core";
import { EnvironmentAliases } from "./environments.js";
import {
  actionMatcher,
  matchPolicy,
  type ActionMatch,
  type FieldCondition,
  type ToolSelector,
} from "./match-policy.js";
import { noProductionDelete } from "./no-production-delete.js";
import { rateCap } from "./rate-cap.js";
import { toolAllowList, toolDenyList } from "./tool-lists.js";
import type { Verdict } from "@agentry/core";
import type { Action, Policy } from "./types.js";

/** `"*"` in an approver list: every enrolled approver (resolved against the approvers file). */
export const ALL_APPROVERS = "*";

const duration = z.union([z.number().int().positive(), z.string()]).transform((v, ctx) => {
  let ms: number | undefined;
  try {
    ms = durationMs(v);
  } catch {
    ms = undefined;
  }
  if (ms !== undefined && ms > 0) return ms;
  ctx.addIssue({ code: "custom", message: `bad duration ${JSON.stringify(v)} (use e.g. 30s, 5m, 1h)` });
  return z.NEVER;
});

const regex = z.string().transform((v, ctx) => {
  try {
    return new RegExp(v);
  } catch (err) {
    ctx.addIssue({ code: "custom", message: `bad regular expression: ${(err as Error).message}` });
    return z.NEVER;
  }
});

const scalar = z.union([z.string(), z.number(), z.boolean(), z.null()]);
const condition = z.union([
  scalar.transform((equals) => ({ equals })),
  z.strictObject({ equals: z.unknown() }),
  z.strictObject({ in: z.array(z.unknown()).min(1) }),
  z.strictObject({ matches: regex }),
]);

const approvers = z
  .union([z.literal(ALL_APPROVERS), z.array(z.string().min(1)).min(1)])
  .transform((v) => (typeof v === "string" ? [v] : v));

const ruleSchema = z
  .strictObject({
    kind: z.literal("rule"),
    name: z.string().min(1),
    when: z.strictObject({
      tool: z
        .union([z.string().min(1), z.array(z.string().min(1)).min(1), z.strictObject({ matches: regex })])
        .optional(),
      input: z.record(z.string(), condition).optional(),
      env: z.union([z.string().min(1), z.array(z.string().min(1)).min(1)]).optional(),
      destructive: z.boolean().optional(),
    }),
    then: z.enum(["allow", "deny", "require_approval"]),
    reason: z.string().min(1).optional(),
    approvers: approvers.optional(),
    quorum: z.number().int().min(1).optional(),
    ttl: duration.optional(),
  })
  .superRefine((r, ctx) => {
    if (r.then !== "require_approval" && (r.approvers || r.quorum || r.ttl)) {
      ctx.addIssue({
        code: "custom",
        message: "approvers/quorum/ttl only apply to then: require_approval",
        path: ["then"],
      });
    }
  });

const entrySchema = z.discriminatedUnion("kind", [
  ruleSchema,
  z.strictObject({
    kind: z.literal("no-production-delete"),
    name: z.string().min(1).optional(),
    reason: z.string().optional(),
  }),
  z.strictObject({
    kind: z.literal("tool-allow-list"),
    name: z.string().min(1).optional(),
    tools: z.array(z.string().min(1)),
  }),
  z.strictObject({
    kind: z.literal("tool-deny-list"),
    name: z.string().min(1).optional(),
    tools: z.array(z.string().min(1)),
  }),
  z.strictObject({
    kind: z.literal("rate-cap"),
    name: z.string().min(1).optional(),
    tool: z.string().min(1),
    max: z.number().int().min(0),
    per: z.enum(["task", "tenant"]),
    window: duration,
  }),
]);

const entry = z.preprocess(
  (v) =>
    v !== null && typeof v === "object" && !Array.isArray(v) && !("kind" in v) ? { kind: "rule", ...v } : v,
  entrySchema,
);

/** The schema of a policy file (YAML or JSON). */
export const policyFileSchema = z.strictObject({
  version: z.literal(1),
  defaults: z
    .strictObject({
      approvers: approvers.optional(),
      quorum: z.number().int().min(1).optional(),
      ttl: duration.optional(),
      verdict: z.enum(["allow", "deny"]).optional(),
    })
    .optional(),
  /** Extra aliases per environment, added to the built-in ones (`production: [prod, prd, live]`). */
  environments: z.record(z.string().min(1), z.array(z.string().min(1))).optional(),
  policies: z.array(entry),
});

/** A parsed, validated policy file. */
export type PolicyFile = z.output<typeof policyFileSchema>;

/** Options for {@link parsePolicyFile} and {@link loadPolicyFile}. */
export interface PolicyFileOptions {
  /** Name shown in errors. @defaultValue `<policy file>` */
  file?: string;
}

/** Defaults when neither the rule nor the file's `defaults` say: every approver, quorum 1, 1 hour. */
const FALLBACK = { approvers: [ALL_APPROVERS], quorum: 1, ttlMs: 3_600_000 };

/** The name of the policy `defaults.verdict: deny` adds; a file cannot use it for its own. */
export const DEFAULT_DENY_POLICY = "default-deny";

/**
 * Parses a policy file (YAML, or JSON, which YAML reads too) into policies for a
 * {@link SafetyValidator}. An invalid file throws `INVALID_CONFIG` naming the file, the line
 * and column, the path inside the document and the reason (`details: {file, line, column, path, reason}`).
 *
 * Fails closed on a file that would allow everything by accident: an empty `policies` list
 * needs an explicit `defaults.verdict` (`allow` or `deny`). `defaults.verdict: deny` denies
 * every action that no `then: allow` rule matches (deny and approval rules still apply to the
 * rest); `then: allow` rules are refused without it, since they would mean nothing.
 * `environments` adds aliases to the built-in ones for every environment comparison in the file.
 */
export function parsePolicyFile(text: string, options: PolicyFileOptions = {}): Policy[] {
  const file = options.file ?? "<policy file>";
  const lineCounter = new LineCounter();
  const doc = parseDocument(text, { lineCounter, prettyErrors: false });
  const yamlError = doc.errors[0];
  if (yamlError) {
    const pos = yamlError.linePos?.[0] ?? lineCounter.linePos(yamlError.pos[0]);
    throw configError(file, pos.line, pos.col, "", yamlError.message.split("\n")[0] ?? "syntax error");
  }
  const parsed = policyFileSchema.safeParse(doc.toJS());
  if (!parsed.success) {
    const issue = pickIssue(parsed.error.issues);
    const path = issue.path.filter((p): p is string | number => typeof p !== "symbol");
    const offset = locate(doc, path);
    const pos = offset === undefined ? undefined : lineCounter.linePos(offset);
    throw configError(file, pos?.line, pos?.col, formatPath(path), issue.message);
  }
  const at = (path: (string | number)[], reason: string): AgentryError => {
    const offset = locate(doc, path);
    const pos = offset === undefined ? undefined : lineCounter.linePos(offset);
    return configError(file, pos?.line, pos?.col, formatPath(path), reason);
  };
  const { policies: entries, defaults = {}, environments: extraAliases } = parsed.data;
  if (entries.length === 0 && defaults.verdict === undefined) {
    throw at(
      ["policies"],
      "the policy list is empty, which would allow every action: add policies, or set defaults.verdict to allow or deny to say what an empty list means",
    );
  }
  let environments: EnvironmentAliases;
  try {
    environments = extraAliases ? new EnvironmentAliases(extraAliases) : EnvironmentAliases.default;
  } catch (err) {
    throw at(["environments"], AgentryError.isInstance(err) ? err.message : String(err));
  }
  const exemptions: ((action: Action) => boolean)[] = [];
  const seen = new Map<string, number>();
  const policies: Policy[] = [];
  entries.forEach((p, index) => {
    if (p.kind === "rule" && p.then === "allow") {
      if (defaults.verdict !== "deny")
        throw at(["policies", index, "then"], "then: allow only applies with defaults.verdict: deny");
      exemptions.push(actionMatcher(ruleMatch(p, environments)));
    }
    const name = p.kind === "rule" ? p.name : (p.name ?? defaultName(p));
    const dup = seen.get(name);
    if (dup !== undefined)
      throw at(["policies", index], `duplicate policy name "${name}" (also policies[${dup}])`);
    if (defaults.verdict === "deny" && name === DEFAULT_DENY_POLICY) {
      throw at(
        ["policies", index],
        `the policy name "${DEFAULT_DENY_POLICY}" is taken by defaults.verdict: deny`,
      );
    }
    seen.set(name, index);
    if (p.kind === "rule" && p.then === "allow") return;
    policies.push(toPolicy(p, defaults, environments));
  });
  if (defaults.verdict === "deny") policies.push(defaultDeny(exemptions));
  return policies;
}

/** Denies what no `then: allow` rule matched: the file's `defaults.verdict: deny`. */
function defaultDeny(exemptions: ((action: Action) => boolean)[]): Policy {
  return {
    name: DEFAULT_DENY_POLICY,
    evaluate: (action): Verdict =>
      exemptions.some((allows) => allows(action))
        ? { type: "allow" }
        : { type: "deny", reason: `no policy allows tool ${action.tool} (defaults.verdict: deny)` },
  };
}

/** Reads and parses a policy file; a missing file is `INVALID_CONFIG` too. */
export function loadPolicyFile(path: string): Policy[] {
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch (err) {
    throw new AgentryError("INVALID_CONFIG", `${path}: cannot read policy file: ${(err as Error).message}`, {
      details: { file: path, reason: "unreadable" },
      cause: err,
    });
  }
  return parsePolicyFile(text, { file: path });
}

/** The reference policy shipped with Agentry (packages/governance/policies/default.yaml). */
export const DEFAULT_POLICY_FILE = fileURLToPath(new URL("../../policies/default.yaml", import.meta.url));

type Entry = PolicyFile["policies"][number];
type Rule = Extract<Entry, { kind: "rule" }>;
type Defaults = NonNullable<PolicyFile["defaults"]>;

/** The name a built-in gives itself when the file names none (duplicates are found before building). */
function defaultName(p: Exclude<Entry, Rule>): string {
  switch (p.kind) {
    case "no-production-delete":
      return "no-prod-delete";
    case "tool-allow-list":
    case "tool-deny-list":
      return p.kind;
    case "rate-cap":
      return `rate-cap:${p.tool}:${p.per}`;
  }
}

/** A rule's `when` as matcher options. */
function ruleMatch(p: Rule, environments: EnvironmentAliases): ActionMatch {
  const tool: ToolSelector | undefined =
    p.when.tool === undefined
      ? undefined
      : typeof p.when.tool === "object" && !Array.isArray(p.when.tool)
        ? p.when.tool.matches
        : p.when.tool;
  const conditions: FieldCondition[] = Object.entries(p.when.input ?? {}).map(([path, c]) =>
    "equals" in c
      ? { path, equals: c.equals }
      : "in" in c
        ? { path, in: c.in }
        : { path, matches: c.matches },
  );
  return {
    conditions,
    environments,
    ...(tool === undefined ? {} : { tool }),
    ...(p.when.env === undefined ? {} : { environment: p.when.env }),
    ...(p.when.destructive === undefined ? {} : { destructive: p.when.destructive }),
  };
}

function toPolicy(p: Entry, defaults: Defaults, environments: EnvironmentAliases): Policy {
  switch (p.kind) {
    case "no-production-delete":
      return noProductionDelete({
        environments,
        ...(p.name ? { name: p.name } : {}),
        ...(p.reason ? { reason: p.reason } : {}),
      });
    case "tool-allow-list":
      return toolAllowList({ tools: p.tools, ...(p.name ? { name: p.name } : {}) });
    case "tool-deny-list":
      return toolDenyList({ tools: p.tools, ...(p.name ? { name: p.name } : {}) });
    case "rate-cap":
      return rateCap({
        tool: p.tool,
        max: p.max,
        per: p.per,
        windowMs: p.window,
        ...(p.name ? { name: p.name } : {}),
      });
    case "rule": {
      const then =
        p.then !== "require_approval"
          ? { type: "deny" as const, reason: p.reason ?? `denied by ${p.name}` }
          : {
              type: "require_approval" as const,
              approvers: p.approvers ?? defaults.approvers ?? FALLBACK.approvers,
              quorum: p.quorum ?? defaults.quorum ?? FALLBACK.quorum,
              ttlMs: p.ttl ?? defaults.ttl ?? FALLBACK.ttlMs,
              reason: p.reason ?? `approval required by ${p.name}`,
            };
      return matchPolicy({ name: p.name, then, ...ruleMatch(p, environments) });
    }
  }
}

interface FlatIssue {
  path: PropertyKey[];
  message: string;
  code: string;
}

/**
 * The most telling issue: inside a union, the branch issue that says most (a custom
 * message, else the deepest path) rather than zod's bare "Invalid input".
 */
function pickIssue(issues: readonly z.core.$ZodIssue[]): FlatIssue {
  const flat: FlatIssue[] = [];
  const walk = (list: readonly z.core.$ZodIssue[], prefix: PropertyKey[]) => {
    for (const i of list) {
      if (i.code === "invalid_union" && i.errors.length > 0) {
        for (const branch of i.errors) walk(branch, [...prefix, ...i.path]);
      } else {
        flat.push({ path: [...prefix, ...i.path], message: i.message, code: i.code });
      }
    }
  };
  walk(issues.slice(0, 1), []);
  const custom = flat.find((i) => i.code === "custom");
  if (custom) return custom;
  const deepest = [...flat].sort((a, b) => b.path.length - a.path.length)[0];
  const first = issues[0];
  return (
    deepest ?? {
      path: first?.path ?? [],
      message: first?.message ?? "invalid",
      code: first?.code ?? "custom",
    }
  );
}

/** Offset of the deepest node that exists along `path`. */
function locate(doc: Document, path: (string | number)[]): number | undefined {
  for (let n = path.length; n >= 0; n--) {
    const node = n === 0 ? doc.contents : doc.getIn(path.slice(0, n), true);
    if (isNode(node) && node.range) return node.range[0];
  }
  return undefined;
}

function formatPath(path: (string | number)[]): string {
  return path.map((p, i) => (typeof p === "number" ? `[${p}]` : i === 0 ? p : `.${p}`)).join("");
}

function configError(
  file: string,
  line: number | undefined,
  column: number | undefined,
  path: string,
  reason: string,
): AgentryError {
  const where = line === undefined ? file : `${file}:${line}:${column ?? 1}`;
  return new AgentryError("INVALID_CONFIG", `${where}: ${path ? `${path}: ` : ""}${reason}`, {
    details: { file, ...(line === undefined ? {} : { line, column }), path, reason },
  });
}
