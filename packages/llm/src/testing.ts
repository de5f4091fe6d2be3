/** Fakes for tests of packages above `@agentry/llm`. */
export {
  ScriptedModel,
  scriptedText,
  scriptedToolUse,
  scriptedError,
  type ScriptedModelOptions,
  type ScriptedStep,
  type ScriptedReply,
  type ScriptedFailure,
  type ScriptedBlock,
} from "./scripted/scripted-model.js";
export { demoDecision, conversationHash, type DemoDecision } from "./scripted/demo-behaviour.js";
