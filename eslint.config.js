// One flat config for the whole repo. Type-aware rules catch floating promises:
// in a queue system an un-awaited promise is a lost job or an unaudited action.
import js from "@eslint/js";
import tseslint from "typescript-eslint";

export default tseslint.config(
  { ignores: ["**/dist/**", "**/node_modules/**", "**/coverage/**", "**/*.js", "**/*.cjs", "**/*.mjs"] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    files: ["**/*.ts"],
    languageOptions: {
      parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname },
    },
    rules: {
      "@typescript-eslint/no-floating-promises": "error",
      "@typescript-eslint/no-misused-promises": "error",
      "@typescript-eslint/await-thenable": "error",
      "@typescript-eslint/no-explicit-any": "error",
      "@typescript-eslint/consistent-type-imports": "error",
      "@typescript-eslint/no-unused-vars": ["error", { argsIgnorePattern: "^_", varsIgnorePattern: "^_" }],
      "no-console": "off",
    },
  },
  // Inside the runtime, the worker host and the producer client meet only in `tasks/` (catalog,
  // progress, cancellation): neither imports the other.
  {
    files: ["packages/runtime/src/worker/**/*.ts"],
    rules: {
      "no-restricted-imports": [
        "error",
        {
          patterns: [
            { group: ["**/client/*"], message: "worker/ must not import client/: share it through tasks/." },
          ],
        },
      ],
    },
  },
  {
    files: ["packages/runtime/src/client/**/*.ts"],
    rules: {
      "no-restricted-imports": [
        "error",
        {
          patterns: [
            { group: ["**/worker/*"], message: "client/ must not import worker/: share it through tasks/." },
          ],
        },
      ],
    },
  },
);
