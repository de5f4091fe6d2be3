export { referenceReply, rulesReply } from "./rules-reply.js";
