import type Anthropic from "@anthropic-ai/sdk";
import type { ContentBlock, Message, ModelRequest, TokenCountRequest } from "../model/types.js";

type CreateParams = Anthropic.Messages.MessageCreateParamsNonStreaming;
type CountParams = Anthropic.Messages.MessageCountTokensParams;
type WireBlock = Anthropic.Messages.ContentBlockParam;

const EPHEMERAL: Anthropic.Messages.CacheControlEphemeral = { type: "ephemeral" };

function toWireBlock(block: ContentBlock): WireBlock {
  switch (block.type) {
    case "text":
      return { type: "text", text: block.text };
    case "tool_use":
      return { type: "tool_use", id: block.id, name: block.name, input: block.input };
    case "tool_result":
      return {
        type: "tool_result",
        tool_use_id: block.toolUseId,
        content: block.content,
        ...(block.isError === undefined ? {} : { is_error: block.isError }),
      };
  }
}

function toWireMessage(message: Message): Anthropic.Messages.MessageParam {
  return {
    role: message.role,
    content: typeof message.content === "string" ? message.content : message.content.map(toWireBlock),
  };
}

/**
 * Our request → `messages.create` params. With `cache: true` the system prompt becomes one text
 * block with `cache_control: ephemeral` and the last tool carries `cache_control` too, so the
 * tools + system prefix is cached (tools come first in Anthropic's cache order). `metadata` and
 * `signal` are not sent; nor is `temperature`, which the Messages API of SDK v1 no longer takes.
 */
export function toCreateParams(request: ModelRequest, model: string): CreateParams {
  return { model, max_tokens: request.maxTokens, ...promptParams(request) };
}

/**
 * Our request → `messages.countTokens` params: exactly the prompt `toCreateParams` sends (same
 * system, messages, tools and cache marks), so the count is the count of what will be billed.
 */
export function toCountTokensParams(request: TokenCountRequest, model: string): CountParams {
  return { model, ...promptParams(request) };
}

function promptParams(request: TokenCountRequest): Pick<CreateParams, "messages" | "system" | "tools"> {
  const params: Pick<CreateParams, "messages" | "system" | "tools"> = {
    messages: request.messages.map(toWireMessage),
  };
  if (request.system !== undefined && request.system.length > 0) {
    params.system = request.cache
      ? [{ type: "text", text: request.system, cache_control: EPHEMERAL }]
      : request.system;
  }
  if (request.tools !== undefined && request.tools.length > 0) {
    const last = request.tools.length - 1;
    params.tools = request.tools.map((tool, i) => ({
      name: tool.name,
      description: tool.description,
      input_schema: tool.inputSchema as Anthropic.Messages.Tool.InputSchema,
      ...(request.cache && i === last ? { cache_control: EPHEMERAL } : {}),
    }));
  }
  return params;
}
