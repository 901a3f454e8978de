#!/usr/bin/env node
// Feature: hashbang (`#!`) comment on the first line — introduced in ES2023.
export function run(): unknown {
  return { hashbang: "ok" };
}
