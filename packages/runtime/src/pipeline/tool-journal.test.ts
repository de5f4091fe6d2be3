import { toolJournalConformance } from "@agentry/agent/testing";
import { useTestRedis } from "@agentry/testkit";
import { RedisToolJournal } from "./tool-journal.js";

const redis = useTestRedis("journal");
toolJournalConformance("RedisToolJournal", () => new RedisToolJournal({ redis: redis.client(), prefix: redis.freshPrefix() }));
