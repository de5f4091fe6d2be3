/**
 * Fake Anthropic Messages API, in process or standalone:
 *
 *   node --import tsx packages/testkit/src/anthropic/fake-anthropic.ts --port 8787 --script replies.json
 *
 * The script file is JSON: either an array of replies (see `FakeReply`) or
 * `{ "steps": [...], "minCacheableTokens": 1024, "apiKey": "...", "tokenInflation": 4, "streamEventDelayMs": 20 }`. When the script runs out the
 * server echoes the last user message (`You said: …`); it knows no tool.
 * On start it prints one JSON line to stdout: `{"url":"http://127.0.0.1:8787","port":8787}`.
 */
import { readFileSync } from "node:fs";
import { pathToFileURL } from "node:url";
import type { FakeReply } from "./replies.js";
import { startFakeAnthropic, type StartFakeAnthropicOptions } from "./server.js";

export {
  startFakeAnthropic,
  type FakeAnthropic,
  type FakeBilling,
  type FakeSentEvent,
  type StartFakeAnthropicOptions,
} from "./server.js";
export {
  fakeReply,
  type FakeReply,
  type FakeStep,
  type FakeMessageReply,
  type FakeErrorReply,
  type FakeMalformedReply,
  type FakeDropReply,
  type FakeStreamOptions,
  type FakeContentBlock,
  type FakeUsage,
  type RecordedRequest,
} from "./replies.js";
export {
  fakeTextTokens,
  fakePromptTokens,
  fakeOutputTokens,
  FAKE_TOOL_PROMPT_TOKENS,
  type WireRequest,
  type WireBlock,
  type WireTool,
} from "./tokens.js";

interface ScriptFile {
  steps?: FakeReply[];
  minCacheableTokens?: number;
  apiKey?: string;
  tokenInflation?: number;
  streamEventDelayMs?: number;
}

/** Parses `--port N --host H --script FILE` into server options. */
export function parseFakeAnthropicArgs(argv: readonly string[]): StartFakeAnthropicOptions {
  const options: StartFakeAnthropicOptions = {};
  for (let i = 0; i < argv.length; i += 1) {
    const arg = argv[i];
    const value = argv[i + 1];
    if (arg === "--port" && value !== undefined) {
      options.port = Number.parseInt(value, 10);
      i += 1;
    } else if (arg === "--host" && value !== undefined) {
      options.host = value;
      i += 1;
    } else if (arg === "--script" && value !== undefined) {
      const parsed = JSON.parse(readFileSync(value, "utf8")) as FakeReply[] | ScriptFile;
      if (Array.isArray(parsed)) options.script = parsed;
      else {
        options.script = parsed.steps ?? [];
        if (parsed.minCacheableTokens !== undefined) options.minCacheableTokens = parsed.minCacheableTokens;
        if (parsed.apiKey !== undefined) options.apiKey = parsed.apiKey;
        if (parsed.tokenInflation !== undefined) options.tokenInflation = parsed.tokenInflation;
        if (parsed.streamEventDelayMs !== undefined) options.streamEventDelayMs = parsed.streamEventDelayMs;
      }
      i += 1;
    } else {
      throw new Error(
        `fake-anthropic: unknown argument ${String(arg)} (usage: --port N [--host H] [--script FILE])`,
      );
    }
  }
  return options;
}

async function main(): Promise<void> {
  const fake = await startFakeAnthropic(parseFakeAnthropicArgs(process.argv.slice(2)));
  process.stdout.write(`${JSON.stringify({ url: fake.url, port: fake.port })}\n`);
  const stop = (): void => {
    void fake.close().then(() => process.exit(0));
  };
  process.once("SIGTERM", stop);
  process.once("SIGINT", stop);
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  main().catch((err: unknown) => {
    process.stderr.write(`fake-anthropic: ${String(err)}\n`);
    process.exit(1);
  });
}
