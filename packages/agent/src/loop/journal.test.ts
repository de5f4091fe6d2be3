import { InMemoryToolJournal } from "./journal.js";
import { toolJournalConformance } from "./tool-journal.conformance.js";

toolJournalConformance("in-memory", () => new InMemoryToolJournal());
