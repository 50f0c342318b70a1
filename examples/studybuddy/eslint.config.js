// ESLint's flat config: the recommended rules, Node globals for the server, scripts and tests,
// browser globals for the web app. Formatting is prettier's job, not ESLint's.

import js from "@eslint/js";
import globals from "globals";

export default [
  { ignores: ["node_modules/", "dist/", "reports/", "build/", "android/", "ios/"] },
  js.configs.recommended,
  {
    files: ["**/*.js", "**/*.mjs"],
    languageOptions: {
      ecmaVersion: 2024,
      sourceType: "module",
      globals: globals.node,
    },
    rules: {
      "no-unused-vars": ["error", { argsIgnorePattern: "^_", caughtErrors: "none" }],
      eqeqeq: ["error", "always"],
      "no-var": "error",
      "prefer-const": "error",
      "no-console": "off",
      "no-implicit-coercion": "error",
      "no-throw-literal": "error",
    },
  },
  {
    files: ["web/**/*.js"],
    languageOptions: { globals: globals.browser },
  },
];
