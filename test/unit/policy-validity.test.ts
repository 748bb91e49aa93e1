import { UNKNOWN } from "../../core/policy/resources";
import { DEFAULT_VALIDITY_LIMITS, validityProblem } from "../../core/policy/validity";

const limits = DEFAULT_VALIDITY_LIMITS;

describe("maximum certificate validity", () => {
  test("defaults: 10 years for CAs, 398 days for serving certificates", () => {
    expect(limits).toEqual({ maxCaValidityHours: 87600, maxServingValidityHours: 9552 });
  });

  test.each([
    [{ isCaCertificate: true, validityPeriodHours: 1825 * 24 }],
    [{ isCaCertificate: true, validityPeriodHours: 87600 }],
    [{ isCaCertificate: false, validityPeriodHours: 90 * 24 }],
    [{ validityPeriodHours: 9552 }],
    [{ isCaCertificate: true, validityPeriodHours: UNKNOWN }],
  ])("%j passes", (props) => {
    expect(validityProblem(props, limits)).toBeUndefined();
  });

  test.each([
    [{ isCaCertificate: true, validityPeriodHours: 87601 }, /CA certificate valid for 87601 hours \(3650 days\), more than the maximum of 87600 hours/],
    [{ isCaCertificate: false, validityPeriodHours: 9553 }, /serving certificate valid for 9553 hours .* servingValidityDays\) or raise the policy's maxServingValidityHours/],
    [{ validityPeriodHours: 0 }, /not a positive number of hours/],
    [{ validityPeriodHours: "forever" }, /not a positive number of hours/],
  ])("%j fails", (props, message) => {
    expect(validityProblem(props, limits)).toMatch(message);
  });

  test("limits come from the policy config", () => {
    const strict = { maxCaValidityHours: 24 * 365, maxServingValidityHours: 24 * 30 };
    expect(validityProblem({ isCaCertificate: false, validityPeriodHours: 90 * 24 }, strict)).toMatch(/maximum of 720 hours \(30 days\)/);
    expect(validityProblem({ isCaCertificate: true, validityPeriodHours: 1825 * 24 }, strict)).toMatch(/raise the policy's maxCaValidityHours/);
  });
});
