// @kubernetes/client-node 1.x and its ESM-only dependencies ship only ES modules. Node >= 20.19 require()s
// them natively, but jest's CommonJS runtime cannot, so jest (only) compiles exactly these packages to
// CommonJS with swc. See docs/kubernetes-client.md.
const esmOnlyPackages = ["@kubernetes/client-node", "openid-client", "oauth4webapi", "jose"];

/** @type {import('jest').Config} */
module.exports = {
  testEnvironment: "node",
  roots: ["<rootDir>/test"],
  testMatch: ["**/*.test.ts"],
  transform: {
    "/node_modules/.+\\.m?js$": ["@swc/jest", { jsc: { target: "es2022", parser: { syntax: "ecmascript" } }, module: { type: "commonjs" } }],
    "^.+\\.(t|j)sx?$": ["@swc/jest", { jsc: { target: "es2022", parser: { syntax: "typescript", decorators: true } }, module: { type: "commonjs" } }],
  },
  transformIgnorePatterns: [`/node_modules/(?!(${esmOnlyPackages.join("|")})/)`],
  testTimeout: 60000,
  // Tests reach this machine's loopback only: the committed stacks name real-looking remote hosts.
  setupFiles: ["<rootDir>/test/support/network-guard.ts"],
  // The Pulumi SDK keeps its run state on globals; jest's soft deletion of globals between files only warns.
  testEnvironmentOptions: { globalsCleanup: "off" },
  reporters: ["default", "<rootDir>/test/support/summary-reporter.cjs"],
};
