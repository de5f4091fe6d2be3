export {
  lintExposition,
  parseExposition,
  type ExpositionFamily,
  type ExpositionProblem,
  type ExpositionSample,
} from "./metrics/lint-exposition.js";
export { promtoolCheckMetrics, type PromtoolVerdict } from "./metrics/promtool.js";
