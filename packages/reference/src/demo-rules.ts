import { clipText, scriptedToolUse, scriptedTurn, toolResultLine, type ScriptedRule } from "@agentry/llm";

const CITY = /\b(?:in|for|at)\s+([\p{Lu}][\p{L}\p{M}'.-]*(?:[\s-]+[\p{Lu}][\p{L}\p{M}'.-]*)*)/u;
const WEATHER = /\b(weather|temperature|forecast)\b/i;
const DELETE =
  /\bdelete\s+(?:the\s+)?([\w./:-]+)\s+(?:in|on|from)\s+(?:the\s+)?(development|staging|production)\b/i;
const RECALL =
  /\b(?:what\s+do\s+you\s+(?:remember|recall)|do\s+you\s+remember|recall)\b(?:\s+(?:about|of|regarding))?\s*([\s\S]*)/i;
const REMEMBER = /\bremember(?:\s+that)?\s+([\s\S]+)/i;

/** A sentence for the reference tools' results (weather, simulated delete); undefined otherwise. */
function describeResult(content: string): string | undefined {
  let value: unknown;
  try {
    value = JSON.parse(content);
  } catch {
    return undefined;
  }
  if (typeof value !== "object" || value === null) return undefined;
  const v = value as Record<string, unknown>;
  if (typeof v.city === "string" && typeof v.temperatureC === "number" && typeof v.conditions === "string") {
    return `In ${v.city} it is ${v.temperatureC}°C and ${v.conditions}.`;
  }
  if (typeof v.deleted === "string" && typeof v.env === "string") {
    return `Done: ${v.deleted} was deleted in ${v.env}${v.simulated === true ? " (simulated)" : ""}.`;
  }
  return undefined;
}

/** Tool results → one sentence each: the reference tools' results in words, anything else plainly. */
const summariseResults: ScriptedRule = (request) => {
  const { toolResults } = scriptedTurn(request);
  if (toolResults.length === 0) return undefined;
  const lines = toolResults.map((r) =>
    r.isError ? toolResultLine(r) : (describeResult(r.content) ?? toolResultLine(r)),
  );
  return { content: lines.join("\n"), stopReason: "end_turn" };
};

/** "weather / temperature / forecast … in <City>" → `get_weather {city}` (or asks which city). */
const weather: ScriptedRule = (request) => {
  const { prompt, offered } = scriptedTurn(request);
  if (!offered.has("get_weather") || !WEATHER.test(prompt)) return undefined;
  const city = CITY.exec(prompt)?.[1]?.replace(/[.?!,]+$/, "");
  return city
    ? scriptedToolUse("get_weather", { city })
    : { content: "Which city would you like the weather for?", stopReason: "end_turn" };
};

/** "delete X in development|staging|production" → `delete_resource {resource, env}`. */
const deleteResource: ScriptedRule = (request) => {
  const { prompt, offered } = scriptedTurn(request);
  const match = DELETE.exec(prompt);
  if (!offered.has("delete_resource") || !match?.[1] || !match[2]) return undefined;
  return scriptedToolUse("delete_resource", { resource: match[1], env: match[2].toLowerCase() });
};

/** "what do you remember / recall …" → `recall {query}`. */
const recall: ScriptedRule = (request) => {
  const { prompt, offered } = scriptedTurn(request);
  const match = RECALL.exec(prompt);
  if (!offered.has("recall") || !match) return undefined;
  const query = (match[1] ?? "").replace(/[?.!]+$/, "").trim();
  return scriptedToolUse("recall", { query: query.length > 0 ? query : prompt });
};

/** "remember …" → `remember {text}`. */
const remember: ScriptedRule = (request) => {
  const { prompt, offered } = scriptedTurn(request);
  const match = REMEMBER.exec(prompt);
  if (!offered.has("remember") || !match?.[1]) return undefined;
  return scriptedToolUse("remember", { text: match[1].trim() });
};

/** Anything else: a short text saying which prompts the demo answers. */
const otherwise: ScriptedRule = (request) => {
  const { prompt, toolResults } = scriptedTurn(request);
  if (prompt.length === 0 || toolResults.length > 0) return undefined;
  return {
    content: `(scripted demo) You asked: "${clipText(prompt, 80)}". This offline model only answers the demo prompts.`,
    stopReason: "end_turn",
  };
};

/**
 * The reference worker's prompts, answered offline and deterministically by the `ScriptedModel`
 * (`AGENTRY_LLM=scripted`): weather, deleting a resource in an environment (development, staging or production), remember and
 * recall, a sentence for each tool result, and a short text for anything else. A tool is only
 * called when the request offers it.
 */
export const demoRules: readonly ScriptedRule[] = [
  summariseResults,
  weather,
  deleteResource,
  recall,
  remember,
  otherwise,
];
