export { buildProducerApp, redactUrl, DEFAULT_BODY_LIMIT_BYTES, type ProducerAppOptions } from "./app.js";
export {
  parseApiKeys,
  ApiKeyAuthenticator,
  type ApiKeyGrant,
  type ApiKeys,
  type Principal,
} from "./auth/api-keys.js";
export { BOARD_COOKIE } from "./auth/authenticate.js";
export { BOARD_PATH } from "./board/bull-board.js";
export {
  httpErrorOf,
  httpStatusOf,
  type FieldError,
  type HttpError,
  type HttpErrorBody,
} from "./http/http-error.js";
export {
  submitTaskBodySchema,
  submitTaskGroupBodySchema,
  taskStatusSchema,
  taskEventSchema,
  errorBodySchema,
  MAX_GROUP_TASKS,
} from "./http/schemas.js";
export {
  buildOpenApiDocument,
  type OpenApiDocument,
  type OpenApiOptions,
} from "./openapi/openapi-document.js";
export { IDEMPOTENCY_HEADER } from "./routes/tasks.js";
export {
  loadApiKeys,
  parseProducerEnv,
  producerEnvSchema,
  DEV_API_KEY,
  NO_API_KEYS_MESSAGE,
  type ProducerEnv,
  type LoadedApiKeys,
} from "./config/producer-env.js";
export {
  SubmitRateLimiter,
  DEFAULT_SUBMIT_RATE,
  DEFAULT_SUBMIT_BURST,
  type SubmitRateLimiterOptions,
} from "./rate-limit/submit-rate-limiter.js";
export { TENANT_BOARD_ROUTES } from "./board/bull-board.js";
