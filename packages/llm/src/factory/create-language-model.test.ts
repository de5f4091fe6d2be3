import { AgentryError } from "@agentry/core";
import { startFakeAnthropic } from "@agentry/testkit";
import { describe, expect, it } from "vitest";
import { AnthropicModel, DEFAULT_MODEL } from "../anthropic/anthropic-model.js";
import { ScriptedModel } from "../scripted/scripted-model.js";
import { createLanguageModel } from "./create-language-model.js";

describe("createLanguageModel", () => {
  it("builds the scripted model, defaulting to claude-sonnet-4-6", () => {
    const llm = createLanguageModel({ llm: "scripted" });
    expect(llm).toBeInstanceOf(ScriptedModel);
    expect(llm.provider).toBe("scripted");
    expect(DEFAULT_MODEL).toBe("claude-sonnet-4-6");
    expect(llm.defaultModel).toBe(DEFAULT_MODEL);
    expect(createLanguageModel({ llm: "scripted", model: "claude-haiku-4-5" }).defaultModel).toBe(
      "claude-haiku-4-5",
    );
  });

  it("builds the Anthropic model, which talks to ANTHROPIC_BASE_URL", async () => {
    const fake = await startFakeAnthropic();
    try {
      const llm = createLanguageModel({
        llm: "anthropic",
        apiKey: "sk-test",
        baseURL: fake.url,
        model: "claude-haiku-4-5",
      });
      expect(llm).toBeInstanceOf(AnthropicModel);
      expect(llm.provider).toBe("anthropic");
      const r = await llm.generate({ messages: [{ role: "user", content: "hello" }], maxTokens: 10 });
      expect(r.model).toBe("claude-haiku-4-5");
      expect(fake.requests[0]?.headers["authorization"]).toBe("Bearer sk-test");
      // a gateway base URL without a key is allowed (the gateway authenticates)
      const keyless = createLanguageModel({ llm: "anthropic", baseURL: fake.url, model: "claude-haiku-4-5" });
      await keyless.generate({ messages: [{ role: "user", content: "hello" }], maxTokens: 10 });
      expect(fake.requests).toHaveLength(2);
    } finally {
      await fake.close();
    }
  });

  it("refuses anthropic with neither key nor base URL", () => {
    let err: unknown;
    try {
      createLanguageModel({ llm: "anthropic" });
    } catch (e) {
      err = e;
    }
    expect(AgentryError.isInstance(err) && err.code).toBe("INVALID_CONFIG");
  });
});
