export type { ApprovalRequestedEvent, Notifier } from "./notifier.js";
export { LogNotifier } from "./log-notifier.js";
export { WebhookNotifier, type WebhookNotifierOptions } from "./webhook-notifier.js";
