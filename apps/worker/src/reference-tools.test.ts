// The reference tools over the real @anthropic-ai/sdk (fake Messages API server), with the
// default policy's governance hooks in front of them, as the worker wires them.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { runAgent } from "@agentry/agent";
import {
  ApprovalStore,
  AuditLog,
  DEFAULT_POLICY_FILE,
  SafetyValidator,
  createGovernanceHooks,
  loadPolicyFile,
} from "@agentry/governance";
import { AnthropicModel } from "@agentry/llm";
import { HashingEmbedder, RedisVectorMemory } from "@agentry/memory";
import { fakeReply, startFakeAnthropic, useTestRedis, type FakeAnthropic } from "@agentry/testkit";
import { deletionsKey, referenceTools } from "@agentry/reference";
import { referenceReply } from "@agentry/reference/testing";

const redis = useTestRedis("reference-tools");
let fake: FakeAnthropic;
beforeAll(async () => {
  fake = await startFakeAnthropic({ handler: referenceReply });
});
afterAll(async () => {
  await fake.close();
});

describe("reference tools", () => {
  it("an env outside the enum is a schema error the model gets back; no policy judges it and nothing is deleted", async () => {
    const prefix = redis.freshPrefix("ref");
    const client = redis.client();
    const memory = new RedisVectorMemory({ redis: client, prefix, embedder: new HashingEmbedder() });
    const tools = referenceTools({ redis: client, prefix, memory });
    const audit = new AuditLog({ redis: client, prefix });
    const governance = createGovernanceHooks({
      validator: new SafetyValidator({ policies: loadPolicyFile(DEFAULT_POLICY_FILE) }),
      approvals: new ApprovalStore({ redis: client, prefix, approverKeys: new Map() }),
      audit,
      approverKeys: new Map(),
    });
    fake.enqueue(
      {
        content: [
          {
            type: "tool_use",
            id: "toolu_cap",
            name: "delete_resource",
            input: { resource: "db-7", env: "Production" },
          },
          {
            type: "tool_use",
            id: "toolu_alias",
            name: "delete_resource",
            input: { resource: "db-7", env: "prod" },
          },
          {
            type: "tool_use",
            id: "toolu_other",
            name: "delete_resource",
            input: { resource: "db-7", env: "qa" },
          },
        ],
      },
      fakeReply.text("I need an exact environment name."),
    );
    const result = await runAgent({
      model: new AnthropicModel({ apiKey: "test-key", baseURL: fake.url, defaultModel: "claude-sonnet-4-6" }),
      tools,
      run: { taskId: "task-ref", tenant: "acme", userId: "u1", sessionId: "s1" },
      hooks: governance,
      messages: [{ role: "user", content: "delete db-7 in Production" }],
    });
    expect(result.status).toBe("completed");

    // The model was told the exact values it may use...
    const sent = fake.requests[0]?.body.tools?.find((t) => t.name === "delete_resource");
    expect(sent?.input_schema).toMatchObject({
      properties: { env: { enum: ["development", "staging", "production"] } },
    });
    // ...and got each wrong spelling back as an error tool_result naming the field.
    const last = fake.requests[1]?.body.messages?.at(-1);
    const results = Array.isArray(last?.content) ? last.content.filter((b) => b.type === "tool_result") : [];
    expect(results.map((r) => [r.tool_use_id, r.is_error])).toEqual([
      ["toolu_cap", true],
      ["toolu_alias", true],
      ["toolu_other", true],
    ]);
    for (const r of results) expect(r.content).toMatch(/^Invalid input for tool "delete_resource":\n- env: /);

    // Never an action: nothing deleted, no verdict, no approval asked of anyone.
    expect(await client.llen(deletionsKey(prefix))).toBe(0);
    const entries = await audit.read();
    expect(entries.map((e) => e.type)).toEqual(["action", "action", "action"]);
    expect(entries.map((e) => (e.type === "action" ? e.data.outcome : undefined))).toEqual([
      "error",
      "error",
      "error",
    ]);
  });

  it("delete_resource declares itself destructive", () => {
    const client = redis.client();
    const tools = referenceTools({
      redis: client,
      prefix: "unused",
      memory: new RedisVectorMemory({ redis: client, prefix: "unused", embedder: new HashingEmbedder() }),
    });
    expect(tools.get("delete_resource")?.destructive).toBe(true);
    expect(tools.get("get_weather")?.destructive).toBeUndefined();
  });
});
