export { toolJournalConformance, type ToolJournalFactory } from "./loop/tool-journal.conformance.js";
