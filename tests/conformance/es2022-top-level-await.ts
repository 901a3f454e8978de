// Feature: top-level await in modules — introduced in ES2022 (only valid in ES modules).
const config = await Promise.resolve({ greeting: "hello", retries: 3 });

export const loaded = true;

export function run(): unknown {
  return { config, loaded };
}
